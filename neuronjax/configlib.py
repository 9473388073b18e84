"""Typed configuration: YAML files and command-line overrides into frozen dataclasses.

One small parser serves every configuration neuronjax reads (run, task, method hyper-parameters,
sweep). It is ours rather than draccus or pydantic because what matters here is the error a user
sees: which file and line or which command-line override, which dotted key, what was expected,
and the nearest valid key when a name is misspelled. Both libraries would need that layer on top
of them anyway, and the schemas are plain frozen dataclasses that the rest of the code already uses.

    raw, source = read_yaml("configs/default.yaml")
    apply_overrides(raw, source, parse_overrides(["identify.k=50"]))
    config = parse(RunConfig, raw, source)

Help and display (`field_help`, `show`, `sections_help`) live in `neuronjax.confighelp`.

Types understood: dataclasses (nested), `Optional` and `Union` (every member tried), `Literal`,
`tuple[X, ...]`, `tuple[X, Y]`, `list[X]`, `dict[str, X]`, bare `dict` (free-form), bool, int,
float (an int is accepted), str and `Any`. A field whose metadata says ``path`` is resolved:
relative paths in a file against the file's folder, relative paths given on the command line
against the working directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from typing import Any, Iterable, Literal, Optional, Sequence, Union

import yaml

from neuronjax.confighelp import help_line, type_hints, unwrap, yaml_value
from neuronjax.errors import ConfigError, ConfigFileNotFound

Path = tuple[str, ...]  # a dotted key as its parts

# Field metadata: {"path": "file"} resolves a relative path; {"path": "file_or_name"} resolves it
# only when the resolved file exists (a value may also be a name, e.g. a Hugging Face repo id).
PATH_FILE = {"path": "file"}
PATH_FILE_OR_NAME = {"path": "file_or_name"}


def dotted(path: Path) -> str:
    return ".".join(path)


# ----------------------------------------------------------------------------- where values come from


@dataclasses.dataclass(frozen=True)
class Override:
    """One `key=value` setting on top of a file: from the command line, a sweep file, or a run
    config's task_overrides."""

    key: str  # dotted key
    value: Any  # parsed as YAML
    origin: str = "command-line"  # who set it, as the user would name it
    base_dir: str = ""  # relative paths in the value resolve against this ("": the working directory)
    text: str = ""  # the override as written (key=value), when it was written by hand

    def describe(self) -> str:
        return f"{self.origin} override {self.text or f'{self.key}={yaml_value(self.value)}'}"


@dataclasses.dataclass
class Source:
    """Where the values of one config came from: a file (with the line of every key) and the
    overrides applied on top of it."""

    file: str = ""  # the YAML file ("" for plain data)
    lines: dict = dataclasses.field(default_factory=dict)  # Path -> 1-based line in `file`
    set_by: dict = dataclasses.field(default_factory=dict)  # Path -> Override that set it
    name: str = "config"  # what to call it when there is no file

    def override_of(self, path: Path) -> Optional[Override]:
        """The override that set `path` (or a section above it), or that created `path` as a
        section the file does not have."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.set_by:
                return self.set_by[path[:n]]
        if path and path not in self.lines:
            for key, ov in self.set_by.items():
                if key[: len(path)] == path:
                    return ov
        return None

    def where(self, path: Path) -> str:
        """How an error at `path` names its place: the override that set it, else file:line: key."""
        ov = self.override_of(path)
        config = self.file or self.name
        if ov is not None:
            return f"{ov.describe()} (on {config}): {dotted(path)}"
        line = None
        for n in range(len(path), -1, -1):
            line = self.lines.get(path[:n])
            if line is not None:
                break
        head = f"{config}:{line}" if line is not None and self.file else config
        return f"{head}: {dotted(path)}" if path else head

    def base_dir(self, path: Path) -> str:
        ov = self.override_of(path)
        if ov is not None:
            return ov.base_dir or os.getcwd()
        return os.path.dirname(os.path.abspath(self.file)) if self.file else os.getcwd()

    def error(self, path: Path, message: str) -> ConfigError:
        return ConfigError(f"{self.where(path)}: {message}")


def read_yaml(path: str, what: str = "config") -> tuple[dict, Source]:
    """A YAML mapping and its Source (the line of every key)."""
    if not os.path.exists(path):
        raise ConfigFileNotFound(f"{path}: no such {what} file")
    with open(path) as f:
        text = f.read()
    try:
        node = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of {what} keys at the top level, got {type(raw).__name__}")
    source = Source(file=path)
    _record_lines(node, (), source.lines)
    return raw, source


def _record_lines(node, path: Path, lines: dict) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                sub = path + (str(key.value),)
                lines[sub] = key.start_mark.line + 1
                _record_lines(value, sub, lines)


# ----------------------------------------------------------------------------- overrides


def parse_overrides(pairs: Iterable[str], origin: str = "command-line", base_dir: str = "") -> list[Override]:
    """["identify.k=50", "task.split.seed=1"] -> Overrides (values parsed as YAML)."""
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"{origin} override {pair!r}: expected dotted.key=value (e.g. identify.k=50)")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"{origin} override {pair!r}: the value is not valid YAML: {err}") from None
        out.append(Override(key, parsed, origin, base_dir or os.getcwd(), f"{key}={value.strip()}"))
    return out


def as_overrides(overrides: Union[None, dict, Sequence[Override]]) -> list[Override]:
    """Overrides from a list of Override or a plain {dotted key: value} mapping (command line)."""
    if not overrides:
        return []
    if isinstance(overrides, dict):
        return [Override(k, v, "command-line", os.getcwd()) for k, v in overrides.items()]
    return list(overrides)


def set_dotted(raw: dict, override: Override, source: Source, key: Optional[str] = None) -> None:
    """Write one override into raw data and remember that it set that key."""
    parts = tuple((key or override.key).split("."))
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(
                f"{override.describe()} (on {source.file or source.name}): {dotted(parts[: i + 1])} is a value "
                f"({yaml_value(child)}), not a section with keys"
            )
        node = child
    node[parts[-1]] = override.value
    source.set_by[parts] = override


def apply_overrides(raw: dict, source: Source, overrides: Sequence[Override]) -> None:
    for ov in overrides:
        set_dotted(raw, ov, source)


# ----------------------------------------------------------------------------- parsing


def suggest(name: str, choices: Iterable[str]) -> str:
    """"; did you mean 'x'?" for the nearest choice, or ""."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown(name: Any, choices: Sequence[str], what: str = "") -> str:
    """The one phrase for a name that is not among `choices`: "'x' unknown; did you mean 'y'?
    (expected one of: a, b)"."""
    return f"{name!r} unknown{suggest(name, choices)} (expected {what or 'one of'}: {', '.join(map(str, choices))})"


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} ({', '.join(_type_name(a) for a in args)})"
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict or hint is dict:
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def parse(cls, raw: Any, source: Source, path: Path = (), fixed: Optional[dict] = None):
    """A `cls` instance from plain data, every key and value checked; `fixed` values (already
    checked elsewhere) are passed through. Errors are ConfigErrors naming where the value came from."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise source.error(path, f"expected a mapping of keys, got {yaml_value(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("internal")}
    hints = type_hints(cls)
    values = dict(fixed or {})
    for key, value in raw.items():
        sub = path + (str(key),)
        if key not in fields:
            section = dotted(path) or "the top level"
            raise source.error(sub, f"unknown key{suggest(key, fields)} ({section} has: {', '.join(fields)})")
        field = fields[key]
        values[key] = check(hints[key], value, source, sub)
        if field.metadata.get("path"):
            values[key] = _resolve(values[key], field.metadata["path"], source, sub)
    missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]  # fmt: skip
    if missing:
        raise source.error(path, f"missing key(s) {', '.join(missing)} ({help_line(cls, missing[0])})")
    try:
        return cls(**values)
    except ConfigError as err:
        raise source.error(path, str(err)) from None
    except (TypeError, ValueError) as err:
        raise source.error(path, str(err)) from None


def check(hint: Any, value: Any, source: Source, path: Path) -> Any:
    """`value` checked (and converted: lists to tuples, ints to floats) against a type hint."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, source, path)
    if origin is Literal:
        if value not in args:
            hint_text = suggest(value, [a for a in args if isinstance(a, str)]) if isinstance(value, str) else ""
            raise source.error(path, f"expected one of {', '.join(yaml_value(a) for a in args)}, got {yaml_value(value)}{hint_text}")
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise source.error(path, f"expected {_type_name(hint)}, got null")
        errors = []
        for member in args:
            if member is type(None):
                continue
            try:
                return check(member, value, source, path)
            except ConfigError as err:
                errors.append((member, err))
        # the member of the value's own shape (a list for a list) says what is wrong inside it
        shaped = [err for member, err in errors if _same_shape(member, value)]
        if len(errors) == 1 or len(shaped) == 1:
            raise (shaped or [errors[0][1]])[0]
        raise source.error(path, f"expected {_type_name(hint)}, got {yaml_value(value)}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise source.error(path, f"expected {_type_name(hint)}, got {yaml_value(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise source.error(path, f"expected {_type_name(hint)}, got {len(value)} values: {yaml_value(value)}")
            return tuple(check(a, v, source, path + (str(i),)) for i, (a, v) in enumerate(zip(args, value)))
        inner = args[0] if args else Any
        items = [check(inner, v, source, path + (str(i),)) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise source.error(path, f"expected a mapping, got {yaml_value(value)}")
        if not args:
            return value
        return {str(k): check(args[1], v, source, path + (str(k),)) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise source.error(path, f"expected true or false, got {yaml_value(value)}")
        return value
    if hint in (int, float, str):
        ok = (int, float) if hint is float else (hint,)
        if not isinstance(value, ok) or isinstance(value, bool):
            raise source.error(path, f"expected {hint.__name__}, got {yaml_value(value)}")
        return float(value) if hint is float else value
    return value


def _same_shape(hint: Any, value: Any) -> bool:
    """A list for a list/tuple type, a mapping for a mapping or dataclass type."""
    origin = typing.get_origin(hint) or hint
    if isinstance(value, (list, tuple)):
        return origin in (list, tuple)
    if isinstance(value, dict):
        return origin is dict or dataclasses.is_dataclass(hint)
    return False


def _resolve(value: Any, kind: str, source: Source, path: Path) -> Any:
    def one(p, sub):
        if not isinstance(p, str) or not p or os.path.isabs(p) or p.startswith("builtin:"):
            return p
        full = os.path.normpath(os.path.join(source.base_dir(sub), os.path.expanduser(p)))
        if kind == "file_or_name" and not os.path.exists(full):
            return p
        return full

    if isinstance(value, (list, tuple)):
        return type(value)(one(p, path + (str(i),)) for i, p in enumerate(value))
    return one(value, path)


def check_key(cls, key: str, where: str) -> Path:
    """Check that a dotted key names a field of `cls` (through nested dataclasses; a free-form
    mapping accepts any key below it). Errors start with `where` and suggest the nearest key."""
    parts = tuple(key.split("."))
    if not key or any(not p for p in parts):
        raise ConfigError(f"{where}: {key!r} is not a dotted key")
    hint: Any = cls
    for i, part in enumerate(parts):
        if hint is dict or typing.get_origin(hint) is dict:
            return parts
        if not dataclasses.is_dataclass(hint):
            raise ConfigError(f"{where}: {key}: {dotted(parts[:i])} is a value, not a section with keys")
        names = [f.name for f in dataclasses.fields(hint) if f.init]
        if part not in names:
            section = dotted(parts[:i]) or "the run config"
            raise ConfigError(f"{where}: {dotted(parts[: i + 1])}: unknown key{suggest(part, names)} ({section} has: {', '.join(names)})")
        hint = unwrap(type_hints(hint)[part])
    return parts


def field_at(cls, key: str) -> Optional[dataclasses.Field]:
    """The dataclass field a dotted key names (e.g. its metadata: is it a path?); None where no
    field is named, e.g. below a free-form mapping."""
    field = None
    for part in key.split("."):
        by_name = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        if part not in by_name:
            return None
        field, cls = by_name[part], unwrap(type_hints(cls)[part])
    return field
