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
import os
import typing
from typing import Any, Literal, Optional

import yaml

from neuronjax.tasks.aqua import AquaConfig
from neuronjax.tasks.pipeline import PipelineConfig
from neuronjax.tasks.prompts import PromptConfig
from neuronjax.tasks.schema import FieldMap, Task
from neuronjax.tasks.splits import Split, SplitConfig, make_split


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """One task: its data, split, prompt, proxies and batching."""

    name: str  # the task's name in results and tables
    source: str  # "builtin:<name>" or a path (relative paths resolve against the YAML's folder)
    format: Literal["auto", "jsonl", "csv", "parquet", "hf_disk"] = "auto"  # file format
    dataset_split: Optional[str] = None  # hf_disk: which split of a saved DatasetDict
    fields: FieldMap = FieldMap()  # which raw field holds question / options / answer / id / subject
    on_error: Literal["fail", "skip"] = "fail"  # bad rows: stop naming all of them, or skip and count
    drop_header_rows: bool = True  # drop stray copies of the header found inside the data
    subjects: tuple[str, ...] = ()  # builtin:mmlu only: subjects to keep
    subject_group: Optional[str] = None  # builtin:mmlu only: stem, humanities, social_sciences, other, all
    split: SplitConfig = SplitConfig()
    prompt: PromptConfig = PromptConfig()
    aqua: AquaConfig = AquaConfig()
    pipeline: PipelineConfig = PipelineConfig()


_NESTED = {"split": SplitConfig, "prompt": PromptConfig, "aqua": AquaConfig, "pipeline": PipelineConfig}


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Light type check of a YAML scalar against a field annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return tuple(_check_type(v, args[0], f"{where}[{k}]") for k, v in enumerate(value))
    expected = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(annotation)
    if expected is None:
        return value
    if not isinstance(value, expected) or (annotation is not bool and isinstance(value, bool)):
        raise ValueError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return float(value) if annotation is float else value


def _build(cls, raw: Any, where: str):
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; expected some of {sorted(names)}")
    values = {}
    for key, value in raw.items():
        if key == "fields":
            values[key] = FieldMap.from_dict(value, f"{where}.fields")
        elif key in _NESTED and cls is TaskConfig:
            values[key] = _build(_NESTED[key], value, f"{where}.{key}")
        else:
            values[key] = _check_type(value, hints[key], f"{where}.{key}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None


def task_config_from_dict(raw: dict, where: str = "task") -> TaskConfig:
    """A TaskConfig from plain data; `where` prefixes error messages (e.g. the YAML path)."""
    for key in ("name", "source"):
        if key not in (raw or {}):
            raise ValueError(f"{where}: missing key {key!r}")
    return _build(TaskConfig, raw, where)


def load_task_config(path: str, overrides: Optional[dict] = None) -> TaskConfig:
    """Read a task YAML; `overrides` maps dotted keys ('prompt.answer_format') to values."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such task config")
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of task keys at the top level, got {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"{path}: override {dotted!r}: {key!r} is not a section")
        node[leaf] = value
    source = raw.get("source", "")
    if isinstance(source, str) and not source.startswith("builtin:") and not os.path.isabs(source):
        raw["source"] = os.path.join(os.path.dirname(os.path.abspath(path)), source)
    return task_config_from_dict(raw, where=path)


def load_task(config: TaskConfig) -> Task:
    """The validated items of a task config."""
    from neuronjax.tasks.builtin import load_builtin
    from neuronjax.tasks.readers import load_task_file

    if config.source.startswith("builtin:"):
        return load_builtin(config.source[len("builtin:") :], config.subjects, config.subject_group, config.name)
    if config.subjects or config.subject_group:
        raise ValueError(f"task {config.name!r}: subjects and subject_group apply to builtin:mmlu only")
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
