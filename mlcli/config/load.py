"""From YAML files and --set overrides to one typed, frozen Config, with every problem at once."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError

from mlcli.config.merge import apply_set, deep_merge, merge_positions
from mlcli.config.schema import Config, DataConfig, run_name_from
from mlcli.config.yamlio import KeyPath, Positions, path_text, read_yaml_file
from mlcli.errors import ConfigError, ConfigProblem

# Keys whose string values are data paths, resolved relative to the file that wrote them.
_PATH_KEYS = ("train", "validation", "test")


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config and where each of its keys was written."""

    config: Config
    positions: Positions = field(default_factory=dict)
    source: Path | None = None

    def problem(self, path: KeyPath, message: str) -> ConfigProblem:
        """A ConfigProblem pointing at the file and line that set `path` (or its nearest parent)."""
        return locate(path, message, self.positions, str(self.source) if self.source else None)


def load_config(
    path: str | os.PathLike | None,
    sets: Iterable[str] = (),
    *,
    base: dict | None = None,
    base_source: str | None = None,
) -> LoadedConfig:
    """Read CONFIG (with its extends), lay it over `base` (or the schema defaults), apply --set."""
    raw: dict = {}
    positions: Positions = {}
    source = None
    if path is not None:
        source = Path(path)
        raw, positions = read_config_tree(source)
    if base is None:
        base = default_dict()
        base_positions: Positions = {}
    else:
        base_positions = {(): (base_source or "<parent>", None)}
    data = deep_merge(base, raw)
    positions = merge_positions(base_positions, positions)
    for assignment in sets:
        apply_set(data, positions, assignment)
    _resolve_set_paths(data, positions)
    if not data.get("name") and source is not None:
        # Not a key the user wrote, so never one to blame: "my config.yaml" runs as my-config.
        data["name"] = run_name_from(source.stem)
    return LoadedConfig(validate(data, positions), positions, source)


def read_config_tree(path: Path, _chain: tuple[Path, ...] = ()) -> tuple[dict, Positions]:
    """One config file with its `extends:` chain merged under it; data paths made absolute."""
    resolved = path.resolve()
    if resolved in _chain:
        cycle = " -> ".join(str(p) for p in _chain + (resolved,))
        raise ConfigError(ConfigProblem("extends", f"extends cycle: {cycle} — remove one of the links", str(path)))
    data, positions = read_yaml_file(path)
    if data is None:
        # An empty file still has a place: problems such as the missing data section point at it.
        data, positions = {}, {(): (str(path), 1)}
    if not isinstance(data, dict):
        raise ConfigError(
            ConfigProblem("", f"the file holds {_kind(data)} — expected a mapping of sections (data:, model:, ...)", str(path), 1)
        )
    _resolve_data_paths(data, path.parent)
    extends = data.pop("extends", None)
    if extends is None:
        return data, positions
    where = positions.get(("extends",), (str(path), None))
    if not isinstance(extends, str) or not extends:
        raise ConfigError(ConfigProblem("extends", f"got {extends!r} — expected the path of a YAML file", *where))
    parent = Path(extends) if os.path.isabs(extends) else path.parent / extends
    if parent.is_dir():
        raise ConfigError(ConfigProblem("extends", f"{extends!r} is a directory ({parent}) — expected a YAML file", *where))
    if not parent.is_file():
        raise ConfigError(
            ConfigProblem("extends", f"{extends!r} not found (looked for {parent}) — paths are relative to this file", *where)
        )
    if parent.resolve() in _chain + (resolved,):
        # Reported at the `extends:` line that closes the loop, so the user sees where to cut it.
        cycle = " -> ".join(str(p) for p in _chain + (resolved, parent.resolve()))
        raise ConfigError(ConfigProblem("extends", f"extends cycle: {cycle} — remove one of the links", *where))
    base, base_positions = read_config_tree(parent, _chain + (resolved,))
    return deep_merge(base, data), merge_positions(base_positions, positions)


def _resolve_data_paths(data: dict, directory: Path) -> None:
    section = data.get("data")
    if not isinstance(section, dict):
        return
    for key in _PATH_KEYS:
        if key in section:
            section[key] = _absolute(section[key], directory)


def _resolve_set_paths(data: dict, positions: Positions) -> None:
    # A data path given by --set is relative to the working directory, like any path on a command
    # line; left relative, it would later be read relative to the run directory's config.yaml.
    section = data.get("data")
    if not isinstance(section, dict):
        return
    for key in _PATH_KEYS:
        where = locate(("data", key), "", positions).source or ""
        if key in section and where.startswith("--set "):
            section[key] = _absolute(section[key], Path.cwd())


def _absolute(value: Any, directory: Path) -> Any:
    if isinstance(value, str) and value and not value.startswith("builtin:") and not os.path.isabs(value):
        # Never shell-expanded: a config path is plain text relative to the file (or flag) that wrote it.
        return os.path.normpath(os.path.join(os.path.abspath(directory), value))
    return value


def default_dict() -> dict:
    """The schema's defaults as plain data (data.train has none: it is required)."""
    defaults = Config(data=DataConfig(train="-")).model_dump(mode="json", exclude={"extends", "name", "tune"})
    # No data defaults here: the schema fills them, and a config without a data section is then
    # reported as exactly that rather than as a missing data.train.
    del defaults["data"]
    return defaults


def validate(data: Any, positions: Positions) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, data, positions)) from None


def to_dict(config: Config) -> dict:
    """The fully resolved config as plain data: what config.yaml holds and `validate --print` shows."""
    # The sections only some runs have (tune:, data.fold) are left out when absent, so that every other
    # run's config.yaml and config hash stay what they were before those keys existed.
    exclude: dict = {"extends": True}
    if config.tune is None:
        exclude["tune"] = True
    if config.data.fold is None:
        exclude["data"] = {"fold"}
    return config.model_dump(mode="json", exclude=exclude)


def config_hash(config: Config) -> str:
    text = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def differences(old: Any, new: Any, path: KeyPath = ()) -> list[str]:
    """Key-by-key difference of two resolved configs, one line per changed key."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines: list[str] = []
        for key in list(old) + [k for k in new if k not in old]:
            if key not in new:
                lines.append(f"{path_text(path + (key,))}: {old[key]!r} -> (absent)")
            elif key not in old:
                lines.append(f"{path_text(path + (key,))}: (absent) -> {new[key]!r}")
            else:
                lines.extend(differences(old[key], new[key], path + (key,)))
        return lines
    if old != new:
        return [f"{path_text(path) or '(config)'}: {old!r} -> {new!r}"]
    return []


# ---- pydantic errors -> located, readable problems ------------------------------------------

_KIND = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list",
         dict: "a mapping", type(None): "null"}

_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "a whole number",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list",
    "dict_type": "a mapping (key: value)", "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
}


def _kind(value: Any) -> str:
    return _KIND.get(type(value), type(value).__name__)


def _problems(exc: ValidationError, data: Any, positions: Positions) -> list[ConfigProblem]:
    found: dict[tuple[KeyPath, str], tuple[str, dict]] = {}
    for error in exc.errors():
        path = _data_path(error, data)
        message = _message(error, path)
        found.setdefault((path, message), (error["type"], error))
    # A union member's "wrong type" is noise when another member explains the problem deeper down.
    problems = []
    paths = [p for p, _ in found]
    for (path, message), (kind, _error) in found.items():
        if kind in _EXPECTED and any(other[: len(path)] == path and other != path for other in paths):
            continue
        problems.append(locate(path, message, positions))
    problems.sort(key=lambda p: (p.source or "", p.line or 0, p.path))
    return problems


def _data_path(error: dict, data: Any) -> KeyPath:
    """The error's location as a path through the data, without pydantic's union-member labels."""
    path: list = []
    node = data
    loc = error["loc"]
    for index, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif index == len(loc) - 1 and error["type"] == "missing":
            path.append(part)
    return tuple(path)


def _message(error: dict, path: KeyPath) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "mlcli":
        return error["msg"]
    if kind == "extra_forbidden":
        allowed = _fields_at(path[:-1])
        text = f"unknown key — expected one of: {', '.join(allowed)}" if allowed else "unknown key"
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1, cutoff=0.6)
        if close:
            text += f"; did you mean {close[0]!r}?"
        return text
    if kind == "missing":
        if path == ("data",):
            return "required section is missing — add e.g. `data: {train: builtin:digits/train}`"
        if path == ("data", "train"):
            return "required key is missing — add e.g. `train: builtin:digits/train` or a .csv path"
        return "required key is missing — add it"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        text = f"got {value!r} — expected one of {expected}"
        options = [o.strip(" '") for o in expected.replace(" or ", ",").split(",") if o.strip()]
        close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.5)
        if close:
            text += f"; did you mean {close[0]!r}?"
        return text
    if kind in _EXPECTED:
        return f"got {value!r} ({_kind(value)}) — expected {_EXPECTED[kind]}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return f"got {value!r} — expected a value {error['msg'].replace('Input should be ', '')}"
    if kind == "too_short":
        return f"is empty — expected at least {error.get('ctx', {}).get('min_length', 1)} item(s)"
    return f"{error['msg']} (got {value!r})"


def _fields_at(path: KeyPath) -> list[str]:
    """The keys the schema allows at `path` (empty when unknown)."""
    model: Any = Config
    for part in path:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return []
        model = _model_in(model.model_fields[part].annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        fields = list(model.model_fields)
        return [f for f in fields if f != "extends"] if model is not Config else fields
    return []


def _model_in(annotation: Any) -> Any:
    """The BaseModel inside Optional[...], list[...] or Union[...] annotations."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def locate(path: KeyPath, message: str, positions: Positions, fallback: str | None = None) -> ConfigProblem:
    """A problem at the file and line that wrote `path`, or else its nearest parent."""
    for depth in range(len(path), -1, -1):
        where = positions.get(tuple(path[:depth]))
        if where:
            return ConfigProblem(path_text(path), message, where[0], where[1])
    return ConfigProblem(path_text(path), message, fallback)
