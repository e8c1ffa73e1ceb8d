"""The layer table and parameter counts (run.json, --json), and how a finetune run shows them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich import box
from rich.table import Table

from mlcli import console
from mlcli.model.backbone_spec import BACKBONE, PREPROCESS
from mlcli.model.build import user_layers
from mlcli.model.normalize import NORMALIZE_LAYER


def _count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def layer_table(model, verbose: bool = False) -> list[dict]:
    """Every declared layer: index, name, type, parameters, trainable or frozen. A backbone
    (model.backbone) comes first as ONE row with its trainable and frozen parameter counts; with
    `verbose`, every layer inside it follows as `backbone/<name>`."""
    rows = backbone_rows(model, verbose)
    for index, layer in enumerate(user_layers(model)):
        params = _count(layer.weights)
        rows.append({
            "index": index, "name": layer.name, "type": type(layer).__name__,
            "params": params, "trainable": bool(layer.trainable), "frozen": 0 if layer.trainable else params,
        })
    return rows


def backbone_rows(model, verbose: bool = False) -> list[dict]:
    """The backbone's row (and with `verbose`, one per layer inside it); none without a backbone."""
    from mlcli.model.backbone import find_backbone, inner_layers  # deferred: imports TensorFlow

    backbone = find_backbone(model)
    if backbone is None:
        return []
    inner = inner_layers(backbone)
    frozen = sum(_count(layer.weights) for layer in inner if not layer.trainable or not backbone.trainable)
    trainable = _count(backbone.trainable_weights)
    rows = [{"index": None, "name": BACKBONE, "type": _backbone_type(backbone), "params": _count(backbone.weights),
             "trainable": trainable > 0, "trainable_params": trainable, "frozen": frozen}]
    if verbose:
        for layer in inner:
            params = _count(layer.weights)
            on = bool(layer.trainable and backbone.trainable)
            rows.append({"index": None, "name": f"{BACKBONE}/{layer.name}", "type": type(layer).__name__,
                         "params": params, "trainable": on, "frozen": 0 if on else params, "inside": True})
    return rows


def _backbone_type(backbone) -> str:
    """What the backbone is: the model inside it (its name after `backbone_`), or its own class."""
    for layer in backbone.layers:
        if layer.name.startswith(BACKBONE + "_") and hasattr(layer, "layers") and layer.name != PREPROCESS:
            return layer.name[len(BACKBONE) + 1:]
    return type(backbone).__name__


def backbone_note(model) -> list[str]:
    """train's line about a backbone: what it is and how much of it is trained (none without one)."""
    rows = backbone_rows(model)
    if not rows:
        return []
    row = rows[0]
    return [f"backbone {row['type']}: {row['trainable_params']:,} trainable, {row['frozen']:,} frozen parameters "
            "(finetune.freeze/unfreeze `backbone`, `backbone/<glob>`; frozen BatchNormalization runs in inference mode)"]


def parameter_counts(model) -> dict[str, int]:
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    non_trainable = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    return {"trainable": trainable, "non_trainable": non_trainable, "total": trainable + non_trainable}


def display_rows(table: list[dict], normalize: list, normalization: int, has_head: bool,
                 typed: bool = False) -> list[dict]:
    """A finetune run's table as shown: the kept normalization (or typed input block) first, then each
    layer with its state."""
    rows = []
    if typed:
        rows.append({"index": None, "name": "input block", "type": "typed features", "params": normalization,
                     "state": "kept from the parent, frozen"})
    elif normalize:
        rows.append({"index": None, "name": NORMALIZE_LAYER, "type": "Normalization", "params": normalization,
                     "state": "kept from the parent"})
    for row in table:
        state = "trainable" if row["trainable"] else "frozen"
        if row["name"] == BACKBONE:
            state = f"{row['trainable_params']:,} trainable, {row['frozen']:,} frozen"
        elif row["type"] == "BatchNormalization" and not row["trainable"]:
            state += " (inference mode)"
        if has_head and row.get("origin") == "head":
            state += " (new)"
        rows.append({**row, "state": state})
    return rows


def show_table(rows: list[dict], totals: dict, path: Path) -> None:
    """Every layer with its parameters and state, and the totals — on stderr, before training."""
    # No side borders and folding instead of "…": a layer name is what a selector has to match, so
    # it is never cut short, even on an 80-column log.
    table = Table(title=f"fine-tuning {path}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  padding=(0, 0))
    for column, justify in (("index", "right"), ("name", "left"), ("type", "left"), ("params", "right"),
                            ("state", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for row in rows:
        table.add_row("-" if row["index"] is None else str(row["index"]), row["name"], row["type"],
                      f"{row['params']:,}", row["state"])
    console.show(table)
    console.info(parameters_line(totals))


def parameters_line(totals: dict) -> str:
    text = f"parameters: {totals['trainable']:,} trainable, {totals['frozen']:,} frozen"
    if totals["normalization"]:
        text += f", {totals['normalization']:,} in the normalization kept from the parent"
    if totals["other_non_trainable"]:
        text += f", {totals['other_non_trainable']:,} moving statistics of trainable layers"
    return text + f" — {totals['total']:,} in total"


def shape_text(shape: tuple) -> str:
    return f"{shape[0]} feature(s) per row" if len(shape) == 1 else f"inputs of shape {tuple(shape)}"
