"""The layer table and parameter counts (run.json, --json), and how a finetune run shows them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich import box
from rich.table import Table

from mlcli import console
from mlcli.model.build import user_layers
from mlcli.model.normalize import NORMALIZE_LAYER


def layer_table(model) -> list[dict]:
    """Every declared layer: index, name, type, parameters, trainable or frozen."""
    rows = []
    for index, layer in enumerate(user_layers(model)):
        params = int(sum(np.prod(w.shape) for w in layer.weights))
        rows.append({
            "index": index, "name": layer.name, "type": type(layer).__name__,
            "params": params, "trainable": bool(layer.trainable),
        })
    return rows


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
        if row["type"] == "BatchNormalization" and not row["trainable"]:
            state += " (inference mode)"
        if has_head and row["origin"] == "head":
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
