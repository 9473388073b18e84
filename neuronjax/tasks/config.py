"""Task configuration: where the items come from, how they are split, prompted and batched.

A YAML file under configs/tasks/ holds one `TaskConfig`:

    name: world_facts
    source: builtin:world_facts        # or a file path, or builtin:mmlu with subjects/subject_group
    split: {seed: 0, num_demo: 4, eval_fraction: 0.3}
    prompt: {answer_format: option_text, option_score: first_token}
    aqua: {num_proxies: 3, kind: cyclic}

Unknown keys and wrongly typed values are errors that name the file and the dotted key.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional, Sequence, Union

from neuronjax import configlib as cl
from neuronjax.configlib import Override
from neuronjax.errors import ConfigError
from neuronjax.tasks.aqua import AquaConfig
from neuronjax.tasks.pipeline import PipelineConfig
from neuronjax.tasks.prompts import PromptConfig
from neuronjax.tasks.schema import FieldMap, Task
from neuronjax.tasks.splits import Split, SplitConfig, make_split


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """One task: its data, split, prompt, proxies and batching."""

    name: str  # the task's name in results and tables
    # "builtin:<name>" or a path (relative paths resolve against the YAML's folder)
    source: str = dataclasses.field(metadata=cl.PATH_FILE)
    format: Literal["auto", "jsonl", "csv", "parquet", "hf_disk"] = "auto"  # file format
    dataset_split: Optional[str] = None  # hf_disk: which split of a saved DatasetDict
    fields: FieldMap = FieldMap()  # which raw field holds question / options / answer / id / subject
    on_error: Literal["fail", "skip"] = "fail"  # bad rows: stop naming all of them, or skip and count
    drop_header_rows: bool = True  # drop stray copies of the header found inside the data
    subjects: tuple[str, ...] = ()  # builtin:mmlu only: subjects to keep
    subject_group: Optional[str] = None  # builtin:mmlu only: stem, humanities, social_sciences, other, all
    split: SplitConfig = SplitConfig()  # which items identify, demonstrate and evaluate
    prompt: PromptConfig = PromptConfig()  # how a proxy is written and its answer read
    aqua: AquaConfig = AquaConfig()  # how each item becomes proxy questions
    pipeline: PipelineConfig = PipelineConfig()  # batching of proxy prompts


def task_config_from_dict(raw: dict, where: str = "task") -> TaskConfig:
    """A TaskConfig from plain data; `where` names it in error messages."""
    return cl.parse(TaskConfig, dict(raw or {}), cl.Source(name=where))


def load_task_config(path: str, overrides: Union[None, dict, Sequence[Override]] = None) -> TaskConfig:
    """Read a task YAML; `overrides` are dotted task keys ('prompt.answer_format') with values
    (a mapping: command-line overrides) or `Override`s that say where they came from."""
    raw, source = cl.read_yaml(path, "task config")
    cl.apply_overrides(raw, source, cl.as_overrides(overrides))
    return cl.parse(TaskConfig, raw, source)


def load_task(config: TaskConfig) -> Task:
    """The validated items of a task config."""
    from neuronjax.tasks.builtin import load_builtin
    from neuronjax.tasks.readers import load_task_file

    if config.source.startswith("builtin:"):
        return load_builtin(config.source[len("builtin:") :], config.subjects, config.subject_group, config.name)
    if config.subjects or config.subject_group:
        raise ConfigError(f"task {config.name!r}: subjects and subject_group apply to builtin:mmlu only")
    return load_task_file(
        config.source,
        name=config.name,
        fields=config.fields,
        fmt=config.format,
        on_error=config.on_error,
        split=config.dataset_split,
        drop_header_rows=config.drop_header_rows,
    )


def load_task_and_split(config: TaskConfig) -> tuple[Task, Split]:
    task = load_task(config)
    return task, make_split(task, config.split)
