"""A binary classifier's decision threshold (docs/contract.md §6): `--threshold T` for evaluate and
predict, and the F1-best threshold on the validation split that training records.

A binary classifier is either one sigmoid unit or a two-way softmax; both give the probability of
the second class of the sorted label vocabulary (`classes[1]`, the "positive" class), and a row is
that class when its probability is above T — Keras's binary_accuracy's rule, so T = 0.5 decides as
the model did without the flag. A model with more than two classes, or a regression, has no threshold.
"""

from __future__ import annotations

import numpy as np

from mlcli.errors import UsageError

BEST = "best"


def parse_threshold(value: str | None) -> float | str | None:
    """--threshold: a number in [0, 1], or `best`; anything else is exit 2 (before any work)."""
    if value is None or value == BEST:
        return value
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"--threshold {value}: expected a probability between 0 and 1, or best") from None
    if not 0.0 <= number <= 1.0:
        raise UsageError(f"--threshold {value}: is outside [0, 1] — it is a probability of the positive class",
                         hint="e.g. --threshold 0.3 flags more rows as the positive class, 0.7 fewer")
    return number


def resolve_threshold(value: float | str | None, ckpt) -> float | None:
    """The threshold to decide with, once the model's classes are known; exit 2 when it cannot apply."""
    if value is None:
        return None
    if ckpt.task != "classification" or ckpt.classes is None or len(ckpt.classes) != 2:
        what = "is a regression model" if ckpt.task != "classification" else f"has {len(ckpt.classes or [])} classes"
        raise UsageError(f"--threshold: applies to binary classifiers (two classes); {ckpt.model_path} {what}",
                         hint="drop --threshold")
    if value == BEST:
        best = ckpt.best_threshold
        if best is None:
            raise UsageError(
                f"--threshold best: {ckpt.model_path} has no recorded F1-best threshold — training records it for "
                "a binary classifier with validation data (data.validation), at the end of the run",
                hint="train it again with data.validation set, or pass a number such as --threshold 0.5")
        return float(best)
    return float(value)


def decide(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Class indices: 1 where the positive class's probability is above `threshold`."""
    return (probabilities[:, 1] > threshold).astype(np.int64)


def f1_best_threshold(positive: np.ndarray, y: np.ndarray) -> dict | None:
    """The threshold on `positive` (probabilities of class 1) that maximises F1 of class 1 against `y`
    (0/1), halfway between the probability of the last row it takes and the next one below; None when
    `y` has no positive row (F1 is 0 at every threshold)."""
    y = np.asarray(y).reshape(-1).astype(np.int64)
    p = np.asarray(positive, dtype=np.float64).reshape(-1)
    total = int(y.sum())
    if total == 0 or len(p) == 0:
        return None
    order = np.argsort(-p, kind="stable")
    p, y = p[order], y[order]
    tp = np.cumsum(y)
    fp = np.cumsum(1 - y)
    f1 = 2 * tp / (tp + fp + total)
    cuts = np.flatnonzero(np.r_[p[1:] != p[:-1], True])  # a threshold cannot split rows of equal probability
    best = int(cuts[np.argmax(f1[cuts])])
    below = p[best + 1] if best + 1 < len(p) else 0.0
    return {"best": float((p[best] + below) / 2), "f1": float(f1[best]), "rows": int(len(p))}


def validation_threshold(model, prepared, config) -> dict | None:
    """At the end of training a binary classifier: the F1-best threshold on its validation split (held in
    memory), as run.json and model.keras's mlcli.json record it; None for any other model or split."""
    from mlcli.data.typed_values import take_rows  # deferred: only a finished binary run needs it

    split = prepared.validation
    if (prepared.task != "classification" or len(prepared.classes or []) != 2 or split is None
            or getattr(split, "streamed", False) or split.rows == 0):
        return None
    outputs = np.concatenate([np.asarray(model(take_rows(split.x, slice(start, start + 4096)), training=False))
                              for start in range(0, split.rows, 4096)]).astype(np.float64)
    outputs = outputs.reshape(len(outputs), -1)
    loss = getattr(config, "loss", None)
    logits = bool(loss is not None and not isinstance(loss, str) and loss.arguments().get("from_logits"))
    if outputs.shape[1] == 1:
        positive = 1.0 / (1.0 + np.exp(-outputs[:, 0])) if logits else outputs[:, 0]
    else:
        if logits:
            outputs = np.exp(outputs - outputs.max(axis=1, keepdims=True))
            outputs = outputs / outputs.sum(axis=1, keepdims=True)
        positive = outputs[:, 1]
    found = f1_best_threshold(positive, np.asarray(split.y).reshape(-1))
    if found is None:
        return None
    return {**found, "split": "validation", "positive_class": prepared.classes[1]}
