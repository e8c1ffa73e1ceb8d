"""Strict YAML reading that remembers where every key came from.

PyYAML's defaults are wrong for configs: it reads `1e-3` as a string, keeps the last of two
duplicate keys, and (outside SafeLoader) builds Python objects from tags. Here `1e-3` is a float,
duplicates are errors, only plain data tags are accepted, and every key path maps to its file and
line so that schema errors can point at them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from mlcli.errors import ConfigError, ConfigProblem

# A key path: ("training", "epochs") or ("model", "layers", 0, "units").
KeyPath = tuple[Any, ...]
# Where each key path was written: path -> (source, line).
Positions = dict[KeyPath, tuple[str, int | None]]

_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}

# YAML 1.2 floats, so that `1e-3`, `1E5` and `.5` are numbers as every user expects.
_FLOAT_1_2 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _StrictLoader(yaml.SafeLoader):
    pass


_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))


def path_text(path: KeyPath) -> str:
    return ".".join(str(p) for p in path)


def read_yaml_file(path: Path) -> tuple[Any, Positions]:
    """Read one YAML file strictly; missing or unreadable files are config errors."""
    source = str(path)
    if not path.exists():
        raise ConfigError(ConfigProblem("", "file not found — expected a YAML config file", source))
    if path.is_dir():
        raise ConfigError(ConfigProblem("", "is a directory — expected a YAML config file", source))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            ConfigProblem("", f"is not UTF-8 text ({exc.reason}) — expected a YAML config file", source)
        ) from None
    except OSError as exc:
        raise ConfigError(ConfigProblem("", f"cannot be read ({exc.strerror})", source)) from None
    return parse_yaml(text, source)


def parse_yaml(text: str, source: str) -> tuple[Any, Positions]:
    """Parse YAML text into plain data plus the position of every key path."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        what = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        raise ConfigError(
            ConfigProblem("", f"YAML syntax error: {what}{context} — fix the indentation or quoting", source, line)
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(ConfigProblem("", f"YAML error: {exc}", source)) from None
    except RecursionError:
        raise ConfigError(ConfigProblem("", _TOO_DEEP, source)) from None
    finally:
        loader.dispose()
    positions: Positions = {}
    if node is None:
        return None, positions
    problems: list[ConfigProblem] = []
    try:
        data = _to_plain(loader, node, (), positions, source, problems, _Walk())
    except RecursionError:
        raise ConfigError(ConfigProblem("", _TOO_DEEP, source)) from None
    if problems:
        raise ConfigError(problems)
    return data, positions


_TOO_DEEP = "the YAML is nested too deeply — a config is a few levels of mappings and lists"
# Far above any real config (a few hundred values), far below what aliases of aliases can expand to
# ("billion laughs": ten lines, 10^9 values), so such a file is refused at once instead of hanging.
_MAX_VALUES = 100_000


class _Walk:
    """What _to_plain tracks across the tree: values expanded so far, nodes on the current path."""

    def __init__(self) -> None:
        self.values = 0
        self.open: set[int] = set()


def _to_plain(loader, node, path: KeyPath, positions: Positions, source: str, problems: list,
              walk: _Walk) -> Any:
    line = node.start_mark.line + 1
    positions.setdefault(path, (source, line))
    walk.values += 1
    if walk.values > _MAX_VALUES:
        raise ConfigError(ConfigProblem(
            path_text(path), f"the YAML expands to more than {_MAX_VALUES:,} values (aliases of aliases?) — "
            "write the config out plainly", source, line,
        ))
    if id(node) in walk.open:
        problems.append(ConfigProblem(
            path_text(path), "recursive alias: an anchor (&name) is used inside itself — configs hold plain data",
            source, line,
        ))
        return None
    if node.tag not in _PLAIN_TAGS:
        problems.append(
            ConfigProblem(
                path_text(path),
                f"YAML tag {node.tag!r} is not allowed — configs hold plain data only "
                "(mappings, lists, strings, numbers, booleans, null)",
                source,
                line,
            )
        )
        return None
    if isinstance(node, MappingNode):
        try:
            loader.flatten_mapping(node)  # YAML merge keys (<<) are plain data too
        except yaml.MarkedYAMLError as exc:
            problems.append(ConfigProblem(path_text(path), f"bad merge key: {exc.problem}", source, line))
            return None
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode) or key_node.tag not in _PLAIN_TAGS:
                problems.append(
                    ConfigProblem(path_text(path), "keys must be plain strings", source, key_line)
                )
                continue
            key = loader.construct_object(key_node)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                problems.append(
                    ConfigProblem(
                        path_text(path),
                        f"key {key!r} is not a string — quote it if it is meant as a name",
                        source,
                        key_line,
                    )
                )
                continue
            child = path + (key,)
            if key in result:
                first = positions.get(child, (source, None))[1]
                problems.append(
                    ConfigProblem(
                        path_text(child),
                        f"duplicate key (first given at line {first}) — give each key once",
                        source,
                        key_line,
                    )
                )
                continue
            positions[child] = (source, key_line)
            walk.open.add(id(node))
            try:
                result[key] = _to_plain(loader, value_node, child, positions, source, problems, walk)
            finally:
                walk.open.discard(id(node))
        return result
    if isinstance(node, SequenceNode):
        walk.open.add(id(node))
        try:
            return [
                _to_plain(loader, item, path + (index,), positions, source, problems, walk)
                for index, item in enumerate(node.value)
            ]
        finally:
            walk.open.discard(id(node))
    return loader.construct_object(node)


class _FlowMapping(dict):
    """A mapping written on one line: layer specs read best that way."""


class _Dumper(yaml.SafeDumper):
    pass


# The dumper must know the loader's floats too, or the string "1e3" is written unquoted and read back
# as the number 1000.0 (breaking `validate --print` round trips).
_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))

_Dumper.add_representer(
    _FlowMapping, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)
)


def _flow_leaves(data: Any, in_list: bool = False) -> Any:
    if isinstance(data, dict):
        items = {k: _flow_leaves(v) for k, v in data.items()}
        flat = all(not isinstance(v, (dict, list)) or v == [] for v in data.values())
        return _FlowMapping(items) if in_list and flat else items
    if isinstance(data, list):
        return [_flow_leaves(v, in_list=True) for v in data]
    return data


def dump_yaml(data: Any) -> str:
    """YAML that read_yaml_file reads back to the same data: sections as blocks, layers one per line."""
    return yaml.dump(
        _flow_leaves(data), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
        allow_unicode=True, width=100,
    )
