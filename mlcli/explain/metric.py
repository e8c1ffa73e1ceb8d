"""The metric permutation importance watches, scored chunk by chunk so memory stays flat in the rows.

The default is the model's first metric (the first of the run's `metrics`, else its loss), as
evaluate reports it. What can be scored from the model's outputs alone, in batches:

- accuracy (accuracy, acc, categorical/sparse_categorical/binary_accuracy): classification, from the
  class decisions evaluate's confusion matrix uses (mlcli.use.inference, mlcli.use.scores);
- mae, mse, rmse (and their long names): regression, over every target;
- loss: the run's own loss (compiled as evaluate compiles it), on the targets encoded as training did.

Anything else (auc, precision, ...) cannot be split into per-batch sums here: exit 2 naming the ones
that can (`--metric`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlcli.checkpoint.checkpoint import Checkpoint
from mlcli.data.labels import as_numpy_targets
from mlcli.errors import UsageError
from mlcli.use.scores import accuracy, confusion_matrix

_KINDS = {
    "accuracy": "accuracy", "acc": "accuracy", "categorical_accuracy": "accuracy",
    "sparse_categorical_accuracy": "accuracy", "binary_accuracy": "accuracy",
    "mae": "mae", "mean_absolute_error": "mae", "mse": "mse", "mean_squared_error": "mse",
    "rmse": "rmse", "root_mean_squared_error": "rmse", "loss": "loss",
}
_TASKS = {"accuracy": ("classification",), "mae": ("regression",), "mse": ("regression",),
          "rmse": ("regression",), "loss": ("classification", "regression")}


@dataclass(frozen=True)
class Metric:
    name: str  # as the run (or --metric) names it
    kind: str  # accuracy | mae | mse | rmse | loss

    @property
    def higher_is_better(self) -> bool:
        return self.kind == "accuracy"

    def drop(self, base: float, shuffled: float) -> float:
        """How much worse the model does with a column shuffled: bigger = more important, whichever
        way the metric points (accuracy falls, an error or a loss rises)."""
        return base - shuffled if self.higher_is_better else shuffled - base


def choose_metric(ckpt: Checkpoint, requested: str | None) -> Metric:
    """--metric, else the model's first metric (evaluate's order: loss, then the run's metrics)."""
    names = ckpt.metric_names()
    name = requested or (names[1] if len(names) > 1 else names[0])
    kind = _KINDS.get(name)
    usable = sorted(k for k, tasks in _TASKS.items() if ckpt.task in tasks)
    if kind is None or ckpt.task not in _TASKS[kind]:
        why = (f"is not one permutation importance can compute for a {ckpt.task} model" if kind is not None
               else "cannot be computed batch by batch from the model's outputs")
        where = "--metric" if requested else f"the model's first metric ({ckpt.model_path})"
        raise UsageError(f"{where}: {name!r} {why} — expected one of {', '.join(usable)}",
                         hint=f"pass --metric {usable[0]}" + (" (or another of those)" if len(usable) > 1 else ""))
    return Metric(name, kind)


class Scorer:
    """One metric over many batches: add(outputs, y) per batch, then value()."""

    def __init__(self, metric: Metric, inference, model, encoding: str, num_classes: int):
        self.metric, self.inference, self.model = metric, inference, model
        self.encoding, self.num_classes = encoding, num_classes
        self.total, self.count = 0.0, 0
        self.confusion = None

    def add(self, outputs: np.ndarray, y: np.ndarray) -> None:
        kind = self.metric.kind
        if kind == "accuracy":
            predicted, _ = self.inference.decode(outputs)
            k = max(self.num_classes, 2)
            counts = confusion_matrix(y, predicted, k)
            self.confusion = counts if self.confusion is None else self.confusion + counts
        elif kind == "loss":
            targets = as_numpy_targets(y, self.encoding, self.num_classes)
            # a Loss object gives the batch's mean, a plain loss function one value per row: the mean either way
            value = float(np.mean(np.asarray(self._loss()(targets, outputs.astype(np.float32)))))
            self.total += value * len(outputs)
            self.count += len(outputs)
        else:
            error = outputs.astype(np.float64) - np.asarray(y, dtype=np.float64).reshape(outputs.shape)
            self.total += float(np.abs(error).sum() if kind == "mae" else np.square(error).sum())
            self.count += error.size

    def value(self) -> float:
        if self.metric.kind == "accuracy":
            return accuracy(self.confusion) if self.confusion is not None else 0.0
        mean = self.total / self.count if self.count else 0.0
        return float(np.sqrt(mean)) if self.metric.kind == "rmse" else float(mean)

    def _loss(self):
        import keras  # deferred: imports TensorFlow

        loss = self.model.loss
        return keras.losses.get(loss) if isinstance(loss, (str, dict)) else loss
