"""The rules about a model's last layers: finetune.head applied, freeze/unfreeze selectors matched,
and the width the last layer must have for the data.

Pure functions over names and lists, so the config checks (no TensorFlow), the finetune config
(the checkpoint's layer record) and the Keras model all use the same rules. This module imports
nothing from mlcli.config at run time: mlcli.config.checks imports it.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence, TypeVar

from mlcli.errors import ConfigError, ConfigProblem
from mlcli.model.backbone_spec import is_backbone_selector

if TYPE_CHECKING:
    from mlcli.config.load import LoadedConfig

Layer = TypeVar("Layer")


# ---- finetune.head: drop the last `replace` layers, append the new ones --------------------------

def kept_layers(layers: Sequence[Layer], replace: int) -> list[Layer]:
    """The layers finetune.head keeps: all but the last `replace` (callers check replace <= len)."""
    return list(layers[: len(layers) - replace])


def apply_head(layers: Sequence[Layer], replace: int, new: Sequence[Layer]) -> list[Layer]:
    """The layers with finetune.head applied: the last `replace` dropped, `new` appended."""
    return kept_layers(layers, replace) + list(new)


# ---- selectors: an index (negative from the end), an exact name, or a glob -----------------------
# ... or input:<column>, a typed model's encoder of that input column (mlcli.model.features).

INPUT_SELECTOR = "input:"


def input_column(selector: int | str) -> str | None:
    """The column an input:<column> selector names; None for a selector of the body's layers."""
    if isinstance(selector, str) and selector.startswith(INPUT_SELECTOR):
        return selector[len(INPUT_SELECTOR):]
    return None


def select_inputs(columns: Sequence[str] | None, selectors: Sequence[int | str], where: tuple,
                  loaded: LoadedConfig) -> list[str]:
    """The input columns that input:<column> selectors pick, each once, in selector order. `columns`:
    the model's typed input columns, None for a model without a typed input block. A column that is
    not an input is a config error at `where` saying which are (and the closest one)."""
    chosen: list[str] = []
    for position, selector in enumerate(selectors):
        column = input_column(selector)
        if column is None:
            continue
        if columns is None:
            raise ConfigError(loaded.problem(
                where + (position,), f"selector {selector!r} reaches a typed feature's encoder, but this model has no "
                "typed input block (its input is one matrix of numbers) — select layers by index, name or glob"))
        if column not in columns:
            raise ConfigError(loaded.problem(where + (position,), unknown_input(selector, columns)))
        if column not in chosen:
            chosen.append(column)
    return chosen


def matching_indices(names: Sequence[str], selector: int | str) -> list[int]:
    """Indices of the layers one selector picks; a glob is tried only when no name matches exactly."""
    if isinstance(selector, int):
        return [selector % len(names)] if -len(names) <= selector < len(names) else []
    matched = [i for i, name in enumerate(names) if name == selector]
    if not matched and any(ch in selector for ch in "*?["):
        matched = [i for i, name in enumerate(names) if fnmatch.fnmatchcase(name, selector)]
    return matched


def unknown_input(selector: str, columns: Sequence[str]) -> str:
    """What is wrong with input:<column> naming a column that is not an input (did you mean...)."""
    column = input_column(selector)
    close = difflib.get_close_matches(column, list(columns), n=1)
    hint = f"; did you mean {INPUT_SELECTOR}{close[0]}?" if close else ""
    return f"selector {selector!r}: {column!r} is not an input column of the model — its input columns are " \
           f"{', '.join(columns)}{hint}"


def select_layers(layers: Sequence[tuple[str, str]], selectors: Sequence[int | str], where: tuple,
                  loaded: LoadedConfig) -> list[int]:
    """Indices matched by selectors, each once, in selector order. `layers`: (name, type) pairs.

    A selector that matches nothing is a config error at `where` listing every layer. input:<column>
    selectors are select_inputs's, and `backbone` / `backbone/<glob>` reach into model.backbone
    (mlcli.model.backbone applies them): both skipped here."""
    names = [name for name, _ in layers]
    chosen: list[int] = []
    for position, selector in enumerate(selectors):
        if input_column(selector) is not None or is_backbone_selector(selector):
            continue
        matched = matching_indices(names, selector)
        if not matched:
            listing = "; ".join(f"{i}: {name} ({type_name})" for i, (name, type_name) in enumerate(layers))
            raise ConfigError(loaded.problem(
                where + (position,),
                f"selector {selector!r} matches no layer — the layers are: {listing}",
            ))
        chosen.extend(i for i in matched if i not in chosen)
    return chosen


# ---- the last layer's width against the data ----------------------------------------------------

@dataclass(frozen=True)
class _WidthMismatch:
    kind: str  # binary | classification | regression
    outputs: str  # what the last layer has: "1 unit (binary)", "5 units"
    data: str  # what the data has: "3 classes ('a', 'b', 'c')", "2 regression target(s) (y1, y2)"
    needed: int  # the units the last layer should have


def _width_mismatch(prepared, encoding: str, outputs: int) -> _WidthMismatch | None:
    if prepared.task == "classification":
        classes = len(prepared.classes)
        shown = ", ".join(map(repr, prepared.classes[:12])) + (", …" if classes > 12 else "")
        if encoding == "binary":
            if classes == 2:
                return None
            return _WidthMismatch("binary", "1 unit (binary)", f"{classes} classes ({shown})", classes)
        if outputs == classes:
            return None
        return _WidthMismatch("classification", f"{outputs} units", f"{classes} classes ({shown})", classes)
    needed = len(prepared.label_names)
    if outputs == needed:
        return None
    return _WidthMismatch("regression", f"{outputs} units",
                          f"{needed} regression target(s) ({', '.join(prepared.label_names)})", needed)


def check_output_width(loaded: LoadedConfig, prepared, encoding: str, outputs: int,
                       parent: str | None = None) -> None:
    """The data must fit the model's last layer: `outputs` units, labels encoded as `encoding`.

    `parent`: for a finetune run, how the parent was named (e.g. "--from PATH"); the error then points
    at the new head, or says how to replace the parent's last layer. Otherwise at model.layers."""
    mismatch = _width_mismatch(prepared, encoding, outputs)
    if mismatch is None:
        return
    if parent is None:
        raise ConfigError(_model_width_problem(loaded, mismatch))
    raise ConfigError(_finetune_width_problem(loaded, mismatch, parent))


def _model_width_problem(loaded: LoadedConfig, mismatch: _WidthMismatch) -> ConfigProblem:
    layers = loaded.config.model.layers
    last = ("model", "layers", len(layers) - 1)
    if "units" in (layers[-1].model_extra or {}):
        last += ("units",)  # point at the line (or the --set) that gave the width, not at the layer
    if mismatch.kind == "binary":
        message = (f"the last layer has {mismatch.outputs} but the data has {mismatch.needed} classes — "
                   f"use {mismatch.needed} units with softmax and categorical_crossentropy")
    elif mismatch.kind == "regression":
        message = (f"the last layer has {mismatch.outputs} but there are {mismatch.data} — "
                   f"set its units to {mismatch.needed}")
    else:
        message = (f"the last layer has {mismatch.outputs} but the data has {mismatch.data} — "
                   f"set its units to {mismatch.needed}")
    return loaded.problem(last, message)


def _finetune_width_problem(loaded: LoadedConfig, mismatch: _WidthMismatch, parent: str) -> ConfigProblem:
    """The new head's last layer when there is one, else the parent's, which finetune.head replaces."""
    head = loaded.config.finetune.head
    if head is not None and head.layers:
        return loaded.problem(
            ("finetune", "head", "layers", len(head.layers) - 1),
            f"the new head's last layer has {mismatch.outputs} but the data has {mismatch.data} — "
            f"set its units to {mismatch.needed}",
        )
    message = (f"the parent's last layer has {mismatch.outputs} but the data has {mismatch.data} — replace it: "
               + new_head(mismatch.needed, classification=mismatch.kind != "regression"))
    if head is not None:
        return loaded.problem(("finetune", "head", "replace"), message)
    return no_head_problem(loaded, message, parent)


def new_head(units: int, classification: bool = True) -> str:
    """The finetune.head that replaces the parent's last layer with `units` fresh outputs."""
    activation = ", activation: softmax" if classification else ""
    return f"finetune.head: {{replace: 1, layers: [{{type: Dense, units: {units}{activation}}}]}}"


def no_head_problem(loaded: LoadedConfig, message: str, parent: str) -> ConfigProblem:
    """A problem with keeping the parent's output layer when no finetune.head was written anywhere:
    it is between the parent and the data, so it is placed at CONFIG (or --from), not at the
    parent's config.yaml, which is not at fault."""
    return ConfigProblem("finetune.head", message, str(loaded.source) if loaded.source else parent)
