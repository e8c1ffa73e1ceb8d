"""Integrated gradients (Sundararajan et al., 2017): each input value's share of one output.

For a row x, a baseline b and the output f explained, the attribution of input i is

    (x_i - b_i) * mean over a in [0, 1] of  d f(b + a (x - b)) / d x_i

with the mean taken by the trapezoid rule on `steps` + 1 evenly spaced points (steps = 50). The
attributions add up to f(x) - f(b) (completeness); the gap left by the finite number of steps is
reported for every row, so a user can see how far to trust them.

What is explained: for a classifier with several outputs, the output of the class the model
predicts for that row (its probability, or its logit for a model trained on logits); for one
sigmoid unit, that unit (the second class's probability); for regression, the first target.

Baselines (`--baseline`): `zeros` (for images: a black image — the default there) or `mean`: the
training mean of every feature, read from the model's own Normalization layer when the run
normalized with `standard` (the default for tables), else the mean of the rows explained.

Only models taking one numeric tensor (plain tables, images) are differentiable in their inputs;
typed tables take strings (categorical, text) through look-ups, so `--method gradients` refuses them
(exit 2, use permutation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlcli.model.normalize import NORMALIZE_LAYER

STEPS = 50
_PATH_BATCH = 2048  # interpolated inputs per gradient call


@dataclass
class Attributions:
    values: np.ndarray  # (rows, *input shape)
    target: list[int]  # the output unit explained, per row
    f_x: np.ndarray  # f(x) per row
    f_baseline: np.ndarray  # f(baseline) per row
    baseline: str

    @property
    def gaps(self) -> np.ndarray:
        """|sum of attributions - (f(x) - f(baseline))| per row: what completeness leaves over."""
        totals = self.values.reshape(len(self.values), -1).sum(axis=1)
        return np.abs(totals - (self.f_x - self.f_baseline))


def training_mean(model, normalize: str | None) -> np.ndarray | None:
    """The training features' mean, when the model carries it (a `standard` Normalization layer)."""
    if normalize != "standard":
        return None
    for layer in model.layers:
        if layer.name == NORMALIZE_LAYER and hasattr(layer, "mean"):
            return np.asarray(layer.mean, dtype=np.float32).reshape(-1)
    return None


def choose_baseline(kind: str, x: np.ndarray, model, normalize: str | None) -> tuple[np.ndarray, str]:
    """(baseline row, how it was chosen). kind: zeros | mean."""
    if kind == "zeros":
        return np.zeros(x.shape[1:], dtype=np.float32), "zeros"
    mean = training_mean(model, normalize)
    if mean is not None and mean.size == int(np.prod(x.shape[1:])):
        return mean.reshape(x.shape[1:]), "the training mean (the model's Normalization layer)"
    return x.mean(axis=0).astype(np.float32), f"the mean of the {len(x):,} rows explained"


def integrated_gradients(model, x: np.ndarray, baseline: np.ndarray, targets: np.ndarray, steps: int = STEPS
                         ) -> np.ndarray:
    """Attributions (rows, *shape) of output unit targets[r] for each row r, from `baseline`."""
    import tensorflow as tf  # deferred: imports TensorFlow

    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    per_call = max(1, _PATH_BATCH // (steps + 1))
    shape = x.shape[1:]
    out = np.zeros(x.shape, dtype=np.float32)
    for start in range(0, len(x), per_call):
        xs = x[start:start + per_call].astype(np.float32)
        rows = len(xs)
        delta = xs - baseline[None]
        path = baseline[None, None] + alphas.reshape(-1, 1, *([1] * len(shape))) * delta[None]
        path = tf.constant(path.reshape(-1, *shape))
        units = np.tile(targets[start:start + rows], steps + 1)
        with tf.GradientTape() as tape:
            tape.watch(path)
            outputs = tf.cast(tf.reshape(model(path, training=False), (len(units), -1)), tf.float32)
            chosen = tf.gather(outputs, units, axis=1, batch_dims=1)
        grads = tape.gradient(chosen, path).numpy().reshape(steps + 1, rows, *shape).astype(np.float64)
        mean_grad = (grads[:-1] + grads[1:]).sum(axis=0) / (2.0 * steps)  # trapezoid rule
        out[start:start + rows] = (delta * mean_grad).astype(np.float32)
    return out


def explained_units(outputs: np.ndarray, task: str) -> np.ndarray:
    """The output unit explained for each row (see the module's docstring)."""
    if task == "classification" and outputs.shape[1] > 1:
        return np.argmax(outputs, axis=1).astype(np.int32)
    return np.zeros(len(outputs), dtype=np.int32)


def attribute(model, inference, x: np.ndarray, task: str, baseline_kind: str, normalize: str | None,
              steps: int = STEPS) -> Attributions:
    baseline, how = choose_baseline(baseline_kind, x, model, normalize)
    f_all = inference.outputs(x)
    targets = explained_units(f_all, task)
    f_b_all = inference.outputs(np.broadcast_to(baseline, x.shape).astype(np.float32))
    rows = np.arange(len(x))
    values = integrated_gradients(model, x, baseline, targets, steps)
    return Attributions(values, targets.tolist(), f_all[rows, targets].astype(np.float64),
                        f_b_all[rows, targets].astype(np.float64), how)
