"""Deep merging (`extends:` and a finetune's parent config) and `--set KEY=VALUE` overrides."""

from __future__ import annotations

import copy
from typing import Any

from mlcli.config.yamlio import KeyPath, Positions, parse_yaml, path_text
from mlcli.errors import ConfigError, ConfigProblem


def deep_merge(base: Any, over: Any) -> Any:
    """`over` wins; mappings merge key by key; lists and scalars replace."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(over)


def merge_positions(base: Positions, over: Positions) -> Positions:
    merged = dict(base)
    merged.update(over)
    return merged


def parse_set(assignment: str) -> tuple[KeyPath, Any, Positions, str]:
    """`training.epochs=3` -> (("training", "epochs"), 3, positions of the value, source label)."""
    source = f"--set {assignment}"
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            ConfigProblem("", "expected KEY=VALUE, e.g. --set training.epochs=3", source),
        )
    parts = key.split(".")
    if any(part == "" for part in parts):
        raise ConfigError(ConfigProblem(key, "empty part in the key — expected dotted keys like training.epochs", source))
    path: KeyPath = tuple(int(p) if _is_index(p) else p for p in parts)
    try:
        value, value_positions = parse_yaml(text, source)
    except ConfigError as exc:
        # The value is one line of a flag: name the key instead of a meaningless `:1`. Such a value is
        # most often text that starts with a YAML sign (`*.csv` reads as an alias): say how to quote it.
        quoted = text.replace("'", "'\\''")
        raise ConfigError(
            [ConfigProblem(key, p.message, source) for p in exc.problems],
            exc.hint or f"""to pass it as text, quote the value inside the flag: --set '{key}="{quoted}"'""",
        ) from None
    positions = {path + sub: (source, None) for sub in value_positions}
    positions[path] = (source, None)
    return path, value, positions, source


def _is_index(part: str) -> bool:
    return part.lstrip("-").isdigit()


def apply_set(data: dict, positions: Positions, assignment: str) -> None:
    """Apply one --set in place. Missing mappings are created; the schema then rejects unknown keys."""
    path, value, value_positions, source = parse_set(assignment)
    node: Any = data
    resolved: list = []  # the path with negative list indices made positive
    created: list[KeyPath] = []  # mappings this --set brought into being: problems in them are its own
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        here = path_text(path[:depth]) or "the config"
        if isinstance(node, dict):
            if isinstance(part, int):
                raise ConfigError(
                    ConfigProblem(path_text(path), f"{here} is a mapping, not a list — use a key name, not {part}", source)
                )
            if last:
                node[part] = value
            else:
                # Create only what is absent or null; a scalar is kept so the step below refuses it
                # (replacing `epochs: 10` by a mapping would blame the file for the --set's mistake).
                if node.get(part) is None:
                    node[part] = {}
                    created.append(tuple(resolved) + (part,))
                node = node[part]
        elif isinstance(node, list):
            if not isinstance(part, int):
                raise ConfigError(
                    ConfigProblem(path_text(path), f"{here} is a list — expected an index such as {here}.0", source)
                )
            if not -len(node) <= part < len(node):
                fix = f"(0 to {len(node) - 1})" if node else f"— set the whole list, e.g. {here}=[...]"
                raise ConfigError(
                    ConfigProblem(
                        path_text(path),
                        f"index {part} is out of range — {here} has {len(node)} item(s) {fix}",
                        source,
                    )
                )
            part = part % len(node)
            if last:
                node[part] = value
            else:
                if node[part] is None:
                    node[part] = {}
                    created.append(tuple(resolved) + (part,))
                node = node[part]
        else:
            raise ConfigError(
                ConfigProblem(path_text(path), f"{here} holds a single value, so it has no keys to set", source)
            )
        resolved.append(part)
    path = tuple(resolved)
    value_positions = {path + sub[len(resolved):]: where for sub, where in value_positions.items()}
    # Positions under the replaced value are stale; the --set is now where it comes from.
    for stale in [p for p in positions if p[: len(path)] == path]:
        del positions[stale]
    positions.update(value_positions)
    positions.update({prefix: (source, None) for prefix in created})
