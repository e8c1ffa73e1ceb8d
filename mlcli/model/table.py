"""The layer table and parameter counts (run.json, --json), and how a finetune run shows them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich import box
from rich.table import Table

from mlcli import console
from mlcli.model.backbone_spec import BACKBONE, PREPROCESS
from mlcli.model.build import user_layers
from mlcli.model.flops import TRAINING_FACTOR, epoch_flops, human_flops, layer_flops
from mlcli.model.memory import human_bytes
from mlcli.model.normalize import NORMALIZE_LAYER


def _count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def layer_table(model, verbose: bool = False) -> list[dict]:
    """Every declared layer: index, name, type, parameters, forward FLOPs per example (mlcli.model.flops),
    trainable or frozen. A backbone
    (model.backbone) comes first as ONE row with its trainable and frozen parameter counts; with
    `verbose`, every layer inside it follows as `backbone/<name>`."""
    rows = backbone_rows(model, verbose)
    for index, layer in enumerate(user_layers(model)):
        params = _count(layer.weights)
        rows.append({
            "index": index, "name": layer.name, "type": type(layer).__name__,
            "params": params, "flops": layer_flops(layer), "trainable": bool(layer.trainable),
            "frozen": 0 if layer.trainable else params,
        })
    return rows


def cost_summary(model, training_rows: int | None, memory_bytes: int | None) -> dict:
    """What training this model costs: each layer's parameters and forward FLOPs per example, the
    forward FLOPs per example, about 3x that per training example times the training rows per epoch
    (mlcli.model.flops), and the estimated training memory (mlcli.model.memory, a lower bound)."""
    layers = [{"name": row["name"], "type": row["type"], "params": row["params"], "flops": row["flops"]}
              for row in layer_table(model)]
    forward = sum(row["flops"] for row in layers)  # the backbone's row counts every layer inside it
    return {
        "layers": layers,
        "forward_flops_per_example": forward,
        "training_rows": training_rows,
        "training_flops_per_epoch": epoch_flops(forward, training_rows) if training_rows is not None else None,
        "convention": f"1 multiply-add = 2 FLOPs; training = {TRAINING_FACTOR} x forward per example",
        "training_memory_bytes": memory_bytes,
    }


def show_costs(cost: dict, title: str = "layers: parameters and forward FLOPs per example") -> None:
    """The cost summary on stderr: one row per layer, then the totals in one line."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for column, justify in (("layer", "left"), ("type", "left"), ("params", "right"), ("FLOPs", "right")):
        table.add_column(column, justify=justify, overflow="fold")
    for row in cost["layers"]:
        table.add_row(row["name"], row["type"], f"{row['params']:,}", f"{row['flops']:,}")
    console.show(table)
    console.info(cost_line(cost))


def cost_line(cost: dict) -> str:
    text = f"forward: {human_flops(cost['forward_flops_per_example'])} per example"
    if cost.get("training_flops_per_epoch") is not None:
        text += (f"; training: about {human_flops(cost['training_flops_per_epoch'])} per epoch "
                 f"({TRAINING_FACTOR} x forward x {cost['training_rows']:,} rows)")
    if cost.get("training_memory_bytes") is not None:
        text += f"; estimated training memory: at least {human_bytes(cost['training_memory_bytes'])}"
    return text


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
             "flops": layer_flops(backbone),
             "trainable": trainable > 0, "trainable_params": trainable, "frozen": frozen}]
    if verbose:
        for layer in inner:
            params = _count(layer.weights)
            on = bool(layer.trainable and backbone.trainable)
            rows.append({"index": None, "name": f"{BACKBONE}/{layer.name}", "type": type(layer).__name__,
                         "params": params, "flops": layer_flops(layer), "trainable": on, "frozen": 0 if on else params, "inside": True})
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
                 typed: bool = False, encoders: list[dict] = ()) -> list[dict]:
    """A finetune run's table as shown: the kept normalization (or the typed input block's encoders,
    input:<column>, those with weights) first, then each layer with its state."""
    rows = []
    if typed:
        rows += [{**row, "type": f"{row['type']} ({row['layer']})"} for row in encoders]
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
