"""What each declared layer holds and does: weight statistics, and activation statistics on the data.

Weights: per weight tensor, its shape, mean, standard deviation, smallest and largest value.
Activations: each declared layer's outputs on the rows explained, run layer after layer the way the
model runs them (a typed model: its input block first, then its body), chunk by chunk with running
sums, so memory stays flat in the rows: mean, standard deviation, and the fraction of outputs that
are exactly zero. For a layer ending in ReLU (activation relu, or a ReLU layer) it also counts dead
units: units (the last axis: a Dense unit, a convolution's channel) that output zero for every row.

Both also go to TensorBoard as histograms (`DIR/tensorboard`, step 0): weights/<layer>/<weight>
and activations/<layer> (the activations of the first chunk of rows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlcli.data.typed_values import row_count, take_rows
from mlcli.model.build import user_layers
from mlcli.model.features import FEATURES, body_of
from mlcli.model.normalize import NORMALIZE_LAYER

CHUNK_ROWS = 1024


def weight_stats(model) -> list[dict]:
    rows = []
    for layer in user_layers(model):
        for weight in layer.weights:
            values = np.asarray(weight.numpy(), dtype=np.float64)
            rows.append({"layer": layer.name, "weight": weight.name, "shape": list(values.shape),
                         "mean": float(values.mean()) if values.size else 0.0,
                         "std": float(values.std()) if values.size else 0.0,
                         "min": float(values.min()) if values.size else 0.0,
                         "max": float(values.max()) if values.size else 0.0})
    return rows


def is_relu(layer) -> bool:
    if type(layer).__name__ == "ReLU":
        return True
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) == "relu"


class _Running:
    def __init__(self, relu: bool):
        self.relu = relu
        self.total = self.squares = 0.0
        self.count = self.zeros = 0
        self.alive: np.ndarray | None = None

    def add(self, values: np.ndarray) -> None:
        values = values.astype(np.float64)
        self.total += float(values.sum())
        self.squares += float(np.square(values).sum())
        self.count += values.size
        self.zeros += int((values == 0).sum())
        if self.relu:
            units = (values != 0).reshape(-1, values.shape[-1]).any(axis=0)
            self.alive = units if self.alive is None else self.alive | units

    def document(self, name: str, kind: str) -> dict:
        mean = self.total / self.count if self.count else 0.0
        variance = max(self.squares / self.count - mean * mean, 0.0) if self.count else 0.0
        doc = {"layer": name, "type": kind, "mean": mean, "std": float(np.sqrt(variance)),
               "zero_fraction": self.zeros / self.count if self.count else 0.0, "relu": self.relu}
        if self.relu and self.alive is not None:
            doc["units"] = int(self.alive.size)
            doc["dead_units"] = int((~self.alive).sum())
            doc["dead_fraction"] = float((~self.alive).mean())
        return doc


def _stages(model) -> tuple[object | None, list, set]:
    """(the input block to run first or None, the layers to run in order, the ids of those to report)."""
    import keras  # deferred: imports TensorFlow

    body = body_of(model)
    if body is not None:
        block = keras.Model(model.inputs, model.get_layer(FEATURES).output)
        return block, list(body.layers), {id(layer) for layer in body.layers}
    declared = {id(layer) for layer in user_layers(model)}
    return None, [layer for layer in model.layers], declared


def activation_stats(model, x, tensorboard_sample: dict | None = None) -> tuple[list[dict], str | None]:
    """(one document per declared layer, a note when the model is not a chain of layers this can walk)."""
    try:
        block, layers, report = _stages(model)
    except (ValueError, AttributeError, KeyError) as exc:
        return [], f"activation statistics skipped: the model is not a chain of layers ({exc})"
    running = {id(layer): _Running(is_relu(layer)) for layer in layers if id(layer) in report}
    rows = row_count(x)
    for start in range(0, rows, CHUNK_ROWS):
        part = take_rows(x, slice(start, min(start + CHUNK_ROWS, rows)))
        try:
            h = block(part, training=False) if block is not None else part
            for layer in layers:
                h = layer(h, training=False)
                if id(layer) in running:
                    values = np.asarray(h)
                    running[id(layer)].add(values)
                    if tensorboard_sample is not None and start == 0:
                        tensorboard_sample[layer.name] = values
        except (ValueError, TypeError) as exc:
            return [], f"activation statistics skipped: its layers cannot be run one after another ({exc})"
    return [running[id(layer)].document(layer.name, type(layer).__name__) for layer in layers
            if id(layer) in running and layer.name != NORMALIZE_LAYER], None


def write_histograms(folder: Path, model, activations: dict) -> None:
    """Weights and a chunk's activations as TensorBoard histograms, in `folder`."""
    import tensorflow as tf  # deferred: imports TensorFlow

    writer = tf.summary.create_file_writer(str(folder))
    with writer.as_default():
        for layer in user_layers(model):
            for weight in layer.weights:
                tf.summary.histogram(f"weights/{layer.name}/{weight.name}", np.asarray(weight.numpy()), step=0)
        for name, values in activations.items():
            tf.summary.histogram(f"activations/{name}", values, step=0)
    writer.flush()
    writer.close()
