"""Tasks: multiple-choice items (2 to 10 options, four by default), their splits, AQUA proxies,
prompts, batches and option scores.

config -> load_task (readers / builtin) -> make_split -> make_proxies (AQUA)
       -> encode_proxies (prompts + tokens) -> pipeline batches -> option_scores -> metrics
"""

from neuronjax.tasks.aqua import AquaConfig, Proxy, make_all_proxies, make_proxies
from neuronjax.tasks.build import EncodedTask, encode_task, pad_token_id
from neuronjax.tasks.builtin import BUILTIN_NAMES, SUBJECT_GROUPS, load_builtin
from neuronjax.tasks.config import TaskConfig, load_task, load_task_and_split, load_task_config, task_config_from_dict
from neuronjax.tasks.encoding import ProxyRecord, TokenizerError, encode_proxies, letter_token_ids
from neuronjax.tasks.metrics import accuracy, letter_histogram, permutation_consistent_accuracy, proxy_correct, target_f
from neuronjax.tasks.pipeline import PipelineConfig, iterate_batches, make_loader, plan_batches
from neuronjax.tasks.prompts import PromptConfig, build_prompt, choose_demo
from neuronjax.tasks.readers import load_task_file, read_rows
from neuronjax.tasks.schema import LETTERS, FieldMap, Item, Task, TaskDataError
from neuronjax.tasks.scoring import (
    cached_continuation_scores,
    candidate_log_probs,
    continuation_log_probs,
    continuation_rows,
    continuation_scores,
    make_cached_scorer,
    make_scorer,
    option_scores,
)
from neuronjax.tasks.splits import Split, SplitConfig, make_split

__all__ = [
    "AquaConfig",
    "BUILTIN_NAMES",
    "EncodedTask",
    "FieldMap",
    "Item",
    "LETTERS",
    "PipelineConfig",
    "PromptConfig",
    "Proxy",
    "ProxyRecord",
    "SUBJECT_GROUPS",
    "Split",
    "SplitConfig",
    "Task",
    "TaskConfig",
    "TaskDataError",
    "TokenizerError",
    "accuracy",
    "build_prompt",
    "candidate_log_probs",
    "choose_demo",
    "continuation_log_probs",
    "continuation_rows",
    "continuation_scores",
    "encode_proxies",
    "encode_task",
    "iterate_batches",
    "letter_histogram",
    "letter_token_ids",
    "load_builtin",
    "load_task",
    "load_task_and_split",
    "load_task_config",
    "load_task_file",
    "make_all_proxies",
    "make_loader",
    "make_cached_scorer",
    "cached_continuation_scores",
    "make_proxies",
    "make_scorer",
    "make_split",
    "option_scores",
    "pad_token_id",
    "permutation_consistent_accuracy",
    "plan_batches",
    "proxy_correct",
    "read_rows",
    "target_f",
    "task_config_from_dict",
]
