"""What a config says about itself: each field's help (the comment beside it in its class), the
resolved config printed as YAML with every key, its help and its default, and the sections of a
config for `--help`. Also the small type utilities the parser in `neuronjax.configlib` shares.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import re
import types
import typing
from typing import Any, Union

import yaml


def yaml_value(value: Any) -> str:
    """A value as it would be written in YAML (flow style, one line)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    if text.endswith("..."):
        text = text[:-3].strip()
    return text


@functools.lru_cache(maxsize=None)
def type_hints(cls) -> dict:
    return typing.get_type_hints(cls)


def unwrap(hint: Any) -> Any:
    """Optional[X] -> X (for walking into sections)."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return hint



@functools.lru_cache(maxsize=None)
def field_help(cls) -> dict[str, str]:
    """{field: help}: the comment on a field's line in the class source, with the comment lines
    directly above it."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    out, above = {}, []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        m = re.match(r"\s*(\w+)\s*:", line)
        if m and m.group(1) in names:
            trailing = line.split("  #", 1)[1].strip() if "  #" in line else ""
            out[m.group(1)] = " ".join([*above, trailing]).strip()
        above = []
    return out


def help_line(cls, name: str) -> str:
    text = field_help(cls).get(name, "")
    return f"{name}: {text}" if text else name


def to_plain(x: Any) -> Any:
    """Plain data (dicts, lists, scalars) of a config dataclass."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: to_plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {k: to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_plain(v) for v in x]
    return x


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return to_plain(field.default)
    if field.default_factory is not dataclasses.MISSING:
        return to_plain(field.default_factory())
    return dataclasses.MISSING


def show(config: Any, indent: int = 0) -> str:
    """Every key of a config dataclass with its value, its help and, where the value differs, its
    default, as YAML that reads back."""
    out = io.StringIO()
    _show(config, indent, out)
    return out.getvalue()


def _show(config: Any, indent: int, out) -> None:
    helps = field_help(type(config))
    pad = " " * indent
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        text = helps.get(f.name, "")
        if dataclasses.is_dataclass(value):
            out.write(f"{pad}{f.name}:{'  # ' + text if text else ''}\n")
            _show(value, indent + 2, out)
            continue
        plain = to_plain(value)
        rendered = yaml_value(plain)
        default = _default(f)
        notes = [text] if text else []
        if default is dataclasses.MISSING:
            notes.append("required")
        elif default != plain:
            notes.append(f"default: {yaml_value(default)}")
        line = f"{pad}{f.name}: {rendered}"
        if notes:
            line = f"{line:<40s}  # " + "; ".join(notes)
        out.write(line + "\n")


def sections_help(cls) -> str:
    """The top-level keys of a config class and, for sections, their keys: for `--help`."""
    helps = field_help(cls)
    hints = type_hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("internal"):
            continue
        hint = unwrap(hints[f.name])
        text = helps.get(f.name, "")
        if dataclasses.is_dataclass(hint):
            keys = ", ".join(g.name for g in dataclasses.fields(hint) if g.init)
            lines.append(f"  {f.name + ':':<14s} {text}" + (" " if text else "") + f"[{keys}]")
        else:
            lines.append(f"  {f.name + ':':<14s} {text}")
    return "\n".join(lines)
