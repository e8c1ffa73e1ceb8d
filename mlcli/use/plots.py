"""Pictures of a finished run: DIR/plots/curves.png (loss and each metric per epoch, train against
validation) and, for classification with validation or test data, DIR/plots/confusion.png; for image
data also DIR/plots/misclassified.png (a grid of the images the model got wrong, true and predicted labels).

matplotlib's object API with the Agg canvas: no pyplot, no display, no global backend switch. Each
PNG is rendered in memory and written atomically, like every other file of a run directory.
A picture is a convenience: `write_run_plots` never lets a plotting problem fail a finished run.
"""

from __future__ import annotations

import contextvars
import io
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from mlcli import console
from mlcli.data.typed_values import take_rows
from mlcli.run import files
from mlcli.use.scores import confusion_matrix

PLOTS = files.PLOTS
CURVES = "curves.png"
CONFUSION = "confusion.png"
MISCLASSIFIED = "misclassified.png"
_GRID_UP_TO = 36  # misclassified images drawn
_NOT_METRICS = {"epoch", "learning_rate", "seconds"}
_ANNOTATE_UP_TO = 30  # classes; beyond that the counts no longer fit their cells
_TRAIN, _VALIDATION = "#1f77b4", "#ff7f0e"


def start_run_plots(run_dir: Path, history: list[dict], model=None, prepared=None, config=None):
    """write_run_plots in a background thread (matplotlib's import and rendering take about a second),
    so it overlaps with the rest of the run's ending; join the returned thread before finishing."""
    # The thread runs in a copy of this command's context, so its note on a failed picture honours the
    # command's --quiet (mlcli.settings keeps them in ContextVars, which a new thread does not inherit).
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(write_run_plots, run_dir, history, model, prepared, config),
                              name="mlcli-plots", daemon=True)
    thread.start()
    return thread


def write_run_plots(run_dir: Path, history: list[dict], model=None, prepared=None, config=None) -> list[Path]:
    """Both pictures, each on its own; a failure becomes one line on stderr, never an error."""
    written = []
    jobs = [(CURVES, lambda: curves_png(history, title=_run_title(run_dir, config), loss=_loss_name(config)))]
    if model is not None and prepared is not None and prepared.task == "classification":
        jobs.append((CONFUSION, lambda: confusion_png(model, prepared, config)))
        if getattr(prepared, "inputs", None):
            jobs.append((MISCLASSIFIED, lambda: misclassified_run_png(model, prepared, config)))
    for name, render in jobs:
        try:
            data = render()
            if data is None:
                continue
            path = run_dir / PLOTS / name
            files.write_atomic(path, data)
            written.append(path)
        except Exception as exc:  # noqa: BLE001 — a picture must never fail a finished run
            console.info(f"note: {PLOTS}/{name} was not written ({type(exc).__name__}: {exc})")
    return written


def _run_title(run_dir: Path, config) -> str:
    return getattr(config, "name", None) or run_dir.name


def _loss_name(config) -> str | None:
    loss = getattr(config, "loss", None)
    return loss if isinstance(loss, str) or loss is None else loss.type


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # deferred: imports matplotlib
    from matplotlib.figure import Figure  # deferred: imports matplotlib

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# ---- curves ------------------------------------------------------------------------------------

def metric_names(history: list[dict]) -> list[str]:
    """loss first, then each metric as history.csv lists it; validation columns pair with these."""
    names: list[str] = []
    for row in history:
        for key in row:
            if key in _NOT_METRICS or key.startswith("val_") or key in names:
                continue
            names.append(key)
    return sorted(names, key=lambda name: name != "loss")


def curves_png(history: list[dict], title: str, loss: str | None = None) -> bytes | None:
    """One panel per metric: train and validation against the epoch."""
    from matplotlib.ticker import MaxNLocator  # deferred: imports matplotlib

    names = metric_names(history)
    if not history or not names:
        return None
    columns = min(len(names), 3)
    rows = math.ceil(len(names) / columns)
    figure = _figure(4.6 * columns, 3.4 * rows + 0.4)
    epochs = [row.get("epoch") for row in history]
    marker = "o" if len(history) <= 30 else None
    for index, name in enumerate(names):
        axes = figure.add_subplot(rows, columns, index + 1)
        for key, label, colour in ((name, "train", _TRAIN), (f"val_{name}", "validation", _VALIDATION)):
            points = [(e, _number(row.get(key))) for e, row in zip(epochs, history)]
            points = [(e, v) for e, v in points if v is not None]
            if points:
                axes.plot(*zip(*points), marker=marker, markersize=4, color=colour, label=label)
        axes.set_title(f"loss ({loss})" if name == "loss" and loss else name)
        axes.set_xlabel("epoch")
        axes.set_ylabel(name)
        if len(history) <= 12:  # every epoch gets its tick, and one epoch is not drawn on a 0.1-wide axis
            axes.set_xticks(epochs)
            axes.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        else:
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
    figure.suptitle(f"{title}: training curves, {len(history)} epoch{'s' if len(history) != 1 else ''}")
    return _png(figure)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# ---- confusion matrix -----------------------------------------------------------------------------

def predicted_classes(outputs: np.ndarray, from_logits: bool) -> np.ndarray:
    """As Keras's accuracy decides: argmax over several units; one unit is p > 0.5 (logit > 0)."""
    outputs = outputs.reshape(len(outputs), -1)
    if outputs.shape[1] == 1:
        return (outputs[:, 0] > (0.0 if from_logits else 0.5)).astype(np.int64)
    return np.argmax(outputs, axis=1)


def _split_predictions(model, prepared, config):
    """(split, its name, predicted classes) of the test split (else the validation split); None without one."""
    split = prepared.test if prepared.test is not None else prepared.validation
    if split is None or split.rows == 0:
        return None
    loss = getattr(config, "loss", None)
    from_logits = bool(loss is not None and not isinstance(loss, str) and loss.arguments().get("from_logits"))
    # Eager forward passes: for a test split this size, tracing model.predict costs more than the math.
    step = 4096 if getattr(prepared, "inputs", None) is None else 256  # images: a few MB per call
    outputs = np.concatenate([np.asarray(model(take_rows(split.x, slice(start, start + step)), training=False))
                              for start in range(0, split.rows, step)])
    name = "test" if split is prepared.test else "validation"
    return split, name, predicted_classes(outputs, from_logits)


def confusion_png(model, prepared, config) -> bytes | None:
    """The test split's confusion matrix (else the validation split's), counts and row shares."""
    found = _split_predictions(model, prepared, config)
    if found is None:
        return None
    split, name, predicted = found
    labels = [str(c) for c in prepared.classes]
    counts = confusion_matrix(np.asarray(split.y).reshape(-1), predicted, len(labels))
    return confusion_figure(counts, labels, f"{name} split")


def misclassified_run_png(model, prepared, config) -> bytes | None:
    found = _split_predictions(model, prepared, config)
    if found is None:
        return None
    split, name, predicted = found
    return misclassified_figure(split.x, np.asarray(split.y).reshape(-1), predicted,
                                [str(c) for c in prepared.classes], f"{name} split")


def misclassified_figure(images: np.ndarray, true: np.ndarray, predicted: np.ndarray, labels: list[str],
                         what: str) -> bytes:
    """A grid of the first misclassified images (pixels in [0, 255]), each titled 'true -> predicted'."""
    wrong = np.flatnonzero(true != predicted)
    shown = wrong[:_GRID_UP_TO]
    columns = max(1, min(6, len(shown)))
    rows = max(1, math.ceil(len(shown) / columns))
    figure = _figure(1.9 * columns + 0.2, 2.0 * rows + 0.5)
    for position, index in enumerate(shown):
        axes = figure.add_subplot(rows, columns, position + 1)
        pixels = np.clip(images[index], 0, 255).astype(np.uint8)
        if pixels.shape[-1] == 1:
            axes.imshow(pixels[..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            axes.imshow(pixels)
        axes.set_title(f"{labels[true[index]]} → {labels[predicted[index]]}", fontsize="small")
        axes.set_axis_off()
    if not len(shown):
        axes = figure.add_subplot(1, 1, 1)
        axes.text(0.5, 0.5, "no misclassified image", ha="center", va="center")
        axes.set_axis_off()
    more = f" (the first {len(shown)})" if len(wrong) > len(shown) else ""
    figure.suptitle(f"misclassified, {what}: {len(wrong):,} of {len(true):,} images{more} — true → predicted")
    return _png(figure)


def confusion_figure(counts: np.ndarray, labels: list[str], what: str) -> bytes:
    classes = len(labels)
    accuracy = float(np.trace(counts)) / max(int(counts.sum()), 1)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(max(4.8, 0.32 * classes + 2.6), 16.0)
    figure = _figure(side + 1.2, side)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    colourbar = figure.colorbar(image, ax=axes, shrink=0.8)
    colourbar.set_label("share of the true class's rows")
    axes.set_xticks(range(classes), labels, rotation=90 if max(map(len, labels)) > 3 else 0)
    axes.set_yticks(range(classes), labels)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    if classes <= _ANNOTATE_UP_TO:
        size = "medium" if classes <= 12 else "small" if classes <= 20 else "x-small"
        for i in range(classes):
            for j in range(classes):
                if counts[i, j]:
                    colour = "white" if shares[i, j] > 0.5 else "black"
                    axes.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=size)
    axes.set_title(f"confusion matrix, {what}: {int(counts.sum()):,} rows, accuracy {accuracy:.3f}")
    return _png(figure)


def write_confusion(path: Path, counts: np.ndarray, classes: list, what: str) -> None:
    """`mlcli evaluate --plot FILE`: the confusion matrix of any data, as a PNG."""
    files.write_atomic(path, confusion_figure(counts, [str(c) for c in classes], what))



def write_misclassified(path: Path, images: np.ndarray, true: np.ndarray, predicted: np.ndarray, classes: list,
                        what: str) -> None:
    """`mlcli evaluate --plot FILE` on images: the misclassified ones beside the confusion matrix."""
    files.write_atomic(path, misclassified_figure(images, np.asarray(true).reshape(-1), np.asarray(predicted),
                                                  [str(c) for c in classes], what))


# ---- predicted versus actual (regression) ---------------------------------------------------------

def predicted_vs_actual_figure(true: np.ndarray, predicted: np.ndarray, targets: list[str], what: str) -> bytes:
    """One scatter panel per target, with the y = x line a perfect model would sit on."""
    true = np.asarray(true, dtype=np.float64).reshape(len(true), -1)
    predicted = np.asarray(predicted, dtype=np.float64).reshape(len(predicted), -1)
    count = true.shape[1]
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    figure = _figure(max(4.8 * columns, 6.0), 4.6 * rows + 0.8)
    size = 12 if len(true) <= 2000 else 3
    for i in range(count):
        name = targets[i] if i < len(targets) else str(i)
        axes = figure.add_subplot(rows, columns, i + 1)
        axes.scatter(true[:, i], predicted[:, i], s=size, alpha=0.5, color=_TRAIN)
        low = float(min(true[:, i].min(), predicted[:, i].min())) if len(true) else 0.0
        high = float(max(true[:, i].max(), predicted[:, i].max())) if len(true) else 1.0
        axes.plot([low, high], [low, high], color=_VALIDATION, linewidth=1, label="predicted = actual")
        rmse = float(np.sqrt(np.mean((true[:, i] - predicted[:, i]) ** 2))) if len(true) else float("nan")
        axes.set_title(f"{name}: rmse {rmse:.4g}")
        axes.set_xlabel(f"actual {name}")
        axes.set_ylabel(f"predicted {name}")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
    figure.suptitle(f"predicted versus actual: {len(true):,} rows\n{what}", fontsize="medium")
    return _png(figure)


def write_predicted_vs_actual(path: Path, true: np.ndarray, predicted: np.ndarray, targets: list[str],
                              what: str) -> None:
    """`mlcli evaluate --plot FILE` for a regression model, as a PNG."""
    files.write_atomic(path, predicted_vs_actual_figure(true, predicted, targets, what))
