"""Classification scores from predicted and true class indices: confusion matrix, per-class and macro."""

from __future__ import annotations

import numpy as np


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """counts[i, j]: rows of class i predicted as class j."""
    return np.bincount(true.astype(np.int64) * k + predicted.astype(np.int64), minlength=k * k).reshape(k, k)


def per_class(confusion: np.ndarray, classes: list) -> list[dict]:
    """Precision, recall, F1 and support per class, from the confusion matrix (0 where undefined)."""
    rows = []
    predicted_counts = confusion.sum(axis=0)
    true_counts = confusion.sum(axis=1)
    for i, label in enumerate(classes):
        hits = int(confusion[i, i])
        precision = hits / predicted_counts[i] if predicted_counts[i] else 0.0
        recall = hits / true_counts[i] if true_counts[i] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"label": label, "precision": float(precision), "recall": float(recall), "f1": float(f1),
                     "support": int(true_counts[i])})
    return rows


def macro_average(confusion: np.ndarray, rows: list[dict]) -> dict:
    """Unweighted mean over the classes that occur in the data or in the predictions."""
    seen = (confusion.sum(axis=0) + confusion.sum(axis=1)) > 0
    present = [r for r, keep in zip(rows, seen) if keep] or rows
    return {key: float(np.mean([r[key] for r in present])) for key in ("precision", "recall", "f1")}


def accuracy(confusion: np.ndarray) -> float:
    """The fraction of rows whose predicted class is the true one (0 for no rows)."""
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else 0.0


def regression_scores(true: np.ndarray, predicted: np.ndarray, targets: list[str]) -> dict[str, float]:
    """rmse and r2 (coefficient of determination, 1 - SSE/SST; 0 for a constant target predicted exactly, as
    scikit-learn's r2_score) in the target's own units. Several targets: `rmse_<target>` and `r2_<target>`
    each, and `rmse` / `r2` their unweighted mean (scikit-learn's uniform_average)."""
    true = np.asarray(true, dtype=np.float64).reshape(len(true), -1)
    predicted = np.asarray(predicted, dtype=np.float64).reshape(len(predicted), -1)
    rmse = np.sqrt(np.mean((true - predicted) ** 2, axis=0))
    sse = np.sum((true - predicted) ** 2, axis=0)
    sst = np.sum((true - true.mean(axis=0)) ** 2, axis=0)
    r2 = np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.where(sse > 0, 0.0, 1.0))
    out = {"rmse": float(rmse.mean()), "r2": float(r2.mean())}
    if true.shape[1] > 1:
        for i in range(true.shape[1]):
            name = targets[i] if i < len(targets) else str(i)
            out[f"rmse_{name}"] = float(rmse[i])
            out[f"r2_{name}"] = float(r2[i])
    return out


def regression_score_names(targets: list[str]) -> list[str]:
    """The names regression_scores reports, for --fail-under/--fail-over before any work."""
    names = ["rmse", "r2"]
    if len(targets) > 1:
        names += [f"{kind}_{t}" for t in targets for kind in ("rmse", "r2")]
    return names
