"""`mlcli explain`: the stage. A checkpoint and its data (read exactly as `evaluate` reads them) ->
permutation importance or integrated gradients, layer statistics and costs, files in DIR.

`--rows N` takes the first N rows of the data for everything the command computes (default: all of
them for permutation, 8 for gradients); more rows than the data holds is exit 2 with the count.
The method follows the model's input: tables default to permutation, images (inputs with more than
one axis per row) to gradients; permutation on images and gradients on typed tables are refused
(exit 2) — a pixel is not a column, and strings have no gradient.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlcli.checkpoint.checkpoint import Checkpoint, open_checkpoint
from mlcli.data.labels import label_encoding
from mlcli.data.typed_values import take_rows
from mlcli.errors import UsageError
from mlcli.explain import gradients, layer_stats, permutation
from mlcli.explain.metric import Metric, Scorer, choose_metric
from mlcli.explain.plots import importance_png, saliency_png
from mlcli.model.memory import training_memory
from mlcli.model.table import cost_summary
from mlcli.run import files
from mlcli.run.files import check_writable_folder
from mlcli.use.evaluate import choose_data, load_with_data, with_label_columns
from mlcli.use.inference import Inference, default_batch_size

IMPORTANCE = "importance.png"
SALIENCY = "saliency.png"
ATTRIBUTIONS = "attributions.npz"
TENSORBOARD = "tensorboard"
GRADIENT_ROWS = 8  # rows attributed by default: integrated gradients costs 51 gradient passes a row
_JSON_VALUES = 100_000  # attribution values carried inline by --json (all of them are in attributions.npz)


@dataclass
class ExplainRequest:
    checkpoint: Path
    data: str | None = None
    labels: list[str] | None = None
    rows: int | None = None
    method: str | None = None  # permutation | gradients; None: by the model's input
    output: Path | None = None
    repeats: int = 5
    metric: str | None = None
    baseline: str | None = None  # zeros | mean; None: zeros for images, mean for tables
    seed: int | None = None
    batch_size: int | None = None
    unsafe: bool = False


@dataclass
class ExplainResult:
    checkpoint: str
    data: str
    source: str
    rows: int
    method: str
    seed: int
    output: Path
    importance: list[dict] = field(default_factory=list)
    importance_measure: str = ""
    metric: dict | None = None
    attributions: dict | None = None
    weights: list[dict] = field(default_factory=list)
    activations: list[dict] = field(default_factory=list)
    flops: dict | None = None
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def document(self) -> dict:
        return {"checkpoint": self.checkpoint, "data": self.data, "source": self.source, "rows": self.rows,
                "method": self.method, "seed": self.seed, "output": str(self.output),
                "importance": self.importance, "importance_measure": self.importance_measure,
                "metric": self.metric, "attributions": self.attributions,
                "layers": {"weights": self.weights, "activations": self.activations},
                "flops": self.flops, "files": self.files}


def model_kind(ckpt: Checkpoint) -> str:
    """typed | image | table (| unknown: a standalone file whose input shape only the model tells)."""
    if ckpt.takes_images:
        return "image"
    if ckpt.typed is not None:
        return "typed"
    if ckpt.input_shape is None:
        return "unknown"
    return "image" if len(ckpt.input_shape) > 1 else "table"


def check_method(method: str | None, kind: str) -> str:
    """The method for this kind of model: the user's, or the default; a method the model cannot take
    is exit 2 naming the one it can."""
    if method is None:
        return "gradients" if kind == "image" else "permutation"
    if method == "gradients" and kind == "typed":
        raise UsageError("--method gradients: this model takes typed columns (categorical, text, dates go through "
                         "look-ups that have no gradient), so integrated gradients cannot attribute to them",
                         hint="use --method permutation (the default for tables): it shuffles each raw column")
    if method == "permutation" and kind == "image":
        raise UsageError("--method permutation: this model takes images; permutation importance shuffles table "
                         "columns, and a single pixel is not one",
                         hint="use --method gradients (the default for images) for a saliency map")
    return method


def default_output(ckpt: Checkpoint) -> Path:
    """DIR: <run>/explain for a run, <name>-explain beside a standalone .keras file."""
    if ckpt.run_dir is not None:
        return ckpt.run_dir / "explain"
    return ckpt.model_path.parent / f"{ckpt.model_path.stem}-explain"


def explain(request: ExplainRequest) -> ExplainResult:
    ckpt = open_checkpoint(request.checkpoint)
    if request.labels:
        ckpt = with_label_columns(ckpt, request.labels, request.data)
    method = check_method(request.method, model_kind(ckpt))
    metric = choose_metric(ckpt, request.metric) if method == "permutation" else None
    if request.metric is not None and method != "permutation":
        raise UsageError("--metric: names the metric permutation importance watches; integrated gradients "
                         "explains the model's output instead", hint="drop --metric, or use --method permutation")
    output = request.output or default_output(ckpt)
    check_writable_folder(output, f"--output {output}")
    chosen = choose_data(ckpt, request.data)
    batch = request.batch_size or default_batch_size(ckpt)

    loaded = load_with_data(ckpt, chosen, unsafe=request.unsafe)  # imports TensorFlow
    model, ckpt, split = loaded.model, loaded.ckpt, loaded.split
    method = check_method(request.method or method, model_kind(ckpt))  # a standalone file's shape is known now
    available = split.rows
    if request.rows is not None and request.rows > available:
        raise UsageError(f"--rows {request.rows}: {chosen.source} {chosen.description} has only {available:,} "
                         "row(s)", hint=f"pass --rows {available} or fewer")
    count = request.rows or (available if method == "permutation" else min(GRADIENT_ROWS, available))
    x, y = take_rows(split.x, slice(0, count)), split.y[:count]
    seed = request.seed if request.seed is not None else (ckpt.loaded.config.seed if ckpt.loaded else 42)
    result = ExplainResult(str(ckpt.model_path), chosen.description, chosen.source, count, method, seed, output,
                           notes=list(loaded.notes))
    if loaded.reader is not None and loaded.reader.dropped:
        result.notes.append(f"left out {loaded.reader.dropped:,} row(s) missing a label or a value, as evaluate "
                            "does")
    inference = Inference(model, ckpt, batch)
    output.mkdir(parents=True, exist_ok=True)
    if method == "permutation":
        _permutation(result, model, ckpt, inference, metric, x, y, request.repeats, seed)
    else:
        _gradients(result, model, ckpt, inference, x, request.baseline)
    _layers(result, model, x)
    memory = training_memory(ckpt.loaded, ckpt.input_shape, finetune=ckpt.from_finetune) \
        if ckpt.loaded is not None and ckpt.input_shape is not None else None
    result.flops = cost_summary(model, ckpt.manifest.get("rows", {}).get("train"),
                                memory.needed if memory is not None else None)
    return result


def _write(result: ExplainResult, name: str, data: bytes, what: str) -> None:
    path = result.output / name
    files.write_atomic(path, data)
    result.files[what] = str(path)


def _permutation(result: ExplainResult, model, ckpt: Checkpoint, inference: Inference, metric: Metric, x, y,
                 repeats: int, seed: int) -> None:
    units = inference.units
    encoding = label_encoding(ckpt.loaded.config, ckpt.task, units, len(ckpt.classes or [])) \
        if ckpt.loaded is not None else ckpt.encoding(units)
    classes = len(ckpt.classes or [])

    def make_scorer() -> Scorer:
        return Scorer(metric, inference, model, encoding, classes)

    base, importances = permutation.permutation_importance(inference, make_scorer, metric, x, y, ckpt.features,
                                                           repeats, seed)
    direction = "falls" if metric.higher_is_better else "rises"
    result.metric = {"name": metric.name, "value": base, "higher_is_better": metric.higher_is_better,
                     "repeats": repeats}
    result.importance = [i.document() for i in importances]
    result.importance_measure = (f"how much {metric.name} {direction} when the column is shuffled "
                                 f"(mean and std over {repeats} repeat(s))")
    _write(result, IMPORTANCE, importance_png(result.importance, f"permutation importance: {result.checkpoint}",
                                              f"{metric.name} {'drop' if metric.higher_is_better else 'rise'} "
                                              "when shuffled"), "importance")


def _gradients(result: ExplainResult, model, ckpt: Checkpoint, inference: Inference, x: np.ndarray,
               baseline: str | None) -> None:
    image = x.ndim > 2
    kind = baseline or ("zeros" if image else "mean")
    normalize = ckpt.loaded.config.data.normalize if ckpt.loaded is not None else None
    found = gradients.attribute(model, inference, x, ckpt.task, kind, normalize)
    gaps = found.gaps
    names = _feature_names(ckpt, x)
    rows = []
    for r in range(len(x)):
        row = {"row": r, "target": _target_name(ckpt, found.target[r], inference.units), "f_x": float(found.f_x[r]),
               "f_baseline": float(found.f_baseline[r]), "sum": float(found.values[r].sum()), "gap": float(gaps[r])}
        if found.values.size <= _JSON_VALUES:
            row["values"] = found.values[r].tolist()
        rows.append(row)
    result.attributions = {"baseline": found.baseline, "steps": gradients.STEPS, "max_gap": float(gaps.max()),
                           "features": names, "rows": rows}
    files.write_atomic(result.output / ATTRIBUTIONS, _npz(inputs=x, attributions=found.values,
                                                          f_x=found.f_x, f_baseline=found.f_baseline))
    result.files["attributions"] = str(result.output / ATTRIBUTIONS)
    if image:
        captions = [f"row {r}: {_target_name(ckpt, found.target[r], inference.units)} ({found.f_x[r]:.3f})" for r in range(len(x))]
        _write(result, SALIENCY, saliency_png(x[:GRADIENT_ROWS], found.values[:GRADIENT_ROWS],
                                              captions[:GRADIENT_ROWS]), "saliency")
        result.importance_measure = "integrated gradients: see attributions and saliency.png"
        return
    magnitude = np.abs(found.values)
    ranked = sorted(range(len(names)), key=lambda i: -float(magnitude[:, i].mean()))
    result.importance = [{"feature": names[i], "mean": float(magnitude[:, i].mean()),
                          "std": float(magnitude[:, i].std())} for i in ranked]
    result.importance_measure = f"mean |integrated gradient| over the {len(x)} row(s) explained (std over the rows)"
    _write(result, IMPORTANCE, importance_png(result.importance, f"integrated gradients: {result.checkpoint}",
                                              "mean |attribution|"), "importance")


def _layers(result: ExplainResult, model, x) -> None:
    result.weights = layer_stats.weight_stats(model)
    sample: dict = {}
    result.activations, note = layer_stats.activation_stats(model, x, sample)
    if note:
        result.notes.append(note)
    folder = result.output / TENSORBOARD
    layer_stats.write_histograms(folder, model, sample)
    result.files["tensorboard"] = str(folder)


def _feature_names(ckpt: Checkpoint, x: np.ndarray) -> list[str]:
    if x.ndim == 2 and ckpt.features and len(ckpt.features) == x.shape[1]:
        return list(ckpt.features)
    return [f"feature {i}" for i in range(x.shape[1])] if x.ndim == 2 else []


def _target_name(ckpt: Checkpoint, unit: int, units: int) -> str:
    if ckpt.task == "classification" and ckpt.classes:
        return str(ckpt.classes[-1] if units == 1 else ckpt.classes[unit])  # one sigmoid unit: the second class
    return ckpt.labels[unit] if unit < len(ckpt.labels) else f"output {unit}"


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()
