"""`mlcli evaluate`: Keras's own metrics for a checkpoint, plus a confusion matrix and per-class scores.

Everything comes from the run's files: the loss and metrics (compiled from its config.yaml, so the
names are the ones training logged), the label vocabulary, the feature names, and the data when
--data is not given: data.test, else the validation split, rebuilt from the run's config and seed by
the very function training used. --data and data.test are read by the InputReader that predict
uses, and the confusion matrix comes from the same forward pass and class decision as predict's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mlcli.checkpoint.checkpoint import Checkpoint, open_checkpoint
from mlcli.checkpoint.load import compile_for_evaluation, load_model
from mlcli.data.feature_types import FeaturePlan
from mlcli.data.image_files import ImageList
from mlcli.data.image_inputs import labelled_split, list_for_evaluation
from mlcli.data.image_prepare import split_validation, train_images
from mlcli.data.inputs import InputReader
from mlcli.data.labels import class_indices, regression_targets
from mlcli.data.pipeline import evaluation_dataset
from mlcli.data.prepare import read_train, validation_split
from mlcli.data.sources import sha256
from mlcli.data.split import Split
from mlcli.data.stream_scan import prepare_stream
from mlcli.data.typed_values import concat_rows
from mlcli.errors import DataError, UsageError
from mlcli.run.diverged import restart_hint
from mlcli.run.files import check_writable_folder
from mlcli.use.inference import Inference, default_batch_size
from mlcli.use.plots import write_confusion, write_misclassified
from mlcli.use.scores import confusion_matrix, macro_average, per_class


@dataclass
class EvalResult:
    checkpoint: str
    data: str  # what was evaluated, as the user (or the run's config) wrote it
    source: str  # --data | data.test | data.validation
    samples: int
    metrics: dict[str, float]
    task: str
    classes: list | None = None
    confusion: np.ndarray | None = None  # rows: true class, columns: predicted class, in `classes` order
    per_class: list[dict] | None = None
    notes: list[str] = field(default_factory=list)
    only_classes: list | None = None  # the run's data.classes filter, when it chose the rows evaluated

    def document(self) -> dict:
        """The --json document: docs/contract.md §1's keys, then the classification details."""
        doc = {"checkpoint": self.checkpoint, "data": self.data, "samples": self.samples,
               "metrics": self.metrics, "source": self.source, "task": self.task}
        if self.only_classes is not None:
            doc["data_classes"] = self.only_classes
        if self.task == "classification":
            doc["classes"] = self.classes
            doc["confusion_matrix"] = self.confusion.tolist()
            doc["per_class"] = self.per_class
            doc["macro_avg"] = macro_average(self.confusion, self.per_class)
        return doc


@dataclass
class _Data:
    source: str
    description: str
    spec: str | None = None  # read with the InputReader
    only_classes: list | None = None  # the run's data.classes filter, for the run's own data


def check_gate_names(ckpt: Checkpoint, gates: list[str]) -> None:
    """An unknown gate metric is exit 2, before any data is read or TensorFlow started."""
    names = ckpt.metric_names()
    unknown = [g for g in gates if g not in names]
    if unknown:
        raise UsageError(
            f"gate metric {unknown[0]!r} is not reported by evaluate for {ckpt.model_path} — expected one of "
            f"{', '.join(names)}",
            hint="evaluate reports Keras's names without prefixes (accuracy, not val_accuracy or test_accuracy)",
        )


def with_label_columns(ckpt: Checkpoint, labels: list[str], data: str | None) -> Checkpoint:
    """--label COLUMN: the label column(s) of --data, where they are not named as the run (or, for a .keras
    file outside a run directory, as `label`) would expect."""
    if data is None:
        raise UsageError(f"--label {labels[0]}: names the label column of --data, and no --data was given",
                         hint="pass --data SOURCE too, or drop --label to evaluate on the run's own data")
    inputs = [c for c in labels if c in (ckpt.features or [])]
    if inputs:
        raise UsageError(f"--label {inputs[0]}: is one of the model's input columns, so it cannot be the label",
                         hint=f"name the column that holds the true labels (the run's was {ckpt.labels[0]!r})")
    return replace(ckpt, labels=list(labels))


def choose_data(ckpt: Checkpoint, data: str | None) -> _Data:
    if data is not None:
        return _Data("--data", data, spec=data)
    if ckpt.loaded is None:
        raise UsageError(
            f"{ckpt.model_path} is not inside a run directory, so there is no data.test to default to",
            hint=f"pass --data SOURCE (its label column named {ckpt.labels[0]!r}, or another named by --label "
                 "COLUMN; for .npz an array y)",
        )
    config = ckpt.loaded.config
    if config.data.test is not None:
        return _Data("data.test", config.data.test, spec=config.data.test, only_classes=config.data.classes)
    if isinstance(config.data.validation, str):
        return _Data("data.validation", config.data.validation, spec=config.data.validation,
                     only_classes=config.data.classes)
    if isinstance(config.data.validation, float):
        return _Data("data.validation",
                     f"{config.data.train} (validation split: {config.data.validation} held out, seed {config.seed})")
    raise UsageError(f"the run {ckpt.run_dir} has no data.test and no validation split",
                     hint="pass --data SOURCE")


def _diverged_note(ckpt: Checkpoint) -> list[str]:
    """A run that diverged kept its last finite state in model.keras: say so, and what can do better."""
    where = ckpt.manifest.get("diverged")  # {} for a standalone .keras file
    if ckpt.manifest.get("status") != "diverged" or not where or ckpt.model_path.name != "model.keras":
        return []
    return [f"this run diverged (loss {where['loss']} at epoch {where['epoch']}); model.keras holds its last "
            f"finite state, after epoch {ckpt.manifest.get('epochs_completed')}. {restart_hint(ckpt.run_dir)}"]


def evaluate(checkpoint: Path, data: str | None, batch_size: int | None, gates: list[str],
             plot: Path | None = None, *, labels: list[str] | None = None, unsafe: bool = False) -> EvalResult:
    """`labels` (--label) name the label column(s) of `data`; `unsafe` (--unsafe) lets Keras run Python
    code stored in the model file."""
    ckpt = open_checkpoint(checkpoint)
    if labels:
        ckpt = with_label_columns(ckpt, labels, data)
    check_gate_names(ckpt, gates)
    if plot is not None:
        check_plot_path(plot, ckpt)
    chosen = choose_data(ckpt, data)
    batch = batch_size or default_batch_size(ckpt)
    reader = None
    images = None
    if ckpt.takes_images:  # every file listed and its header checked before TensorFlow starts
        images = _images(ckpt, chosen)
    elif chosen.spec is not None and ckpt.input_known:
        reader = _reader(ckpt, chosen)  # columns checked before TensorFlow starts
    model, ckpt = load_model(ckpt, unsafe=unsafe)
    compile_for_evaluation(model, ckpt)
    notes = list(ckpt.notes) + _diverged_note(ckpt)
    if images is not None:
        split = labelled_split(images, ckpt.inputs, ckpt.classes, chosen.source)
        notes += [images.note(chosen.source)] if images.note(chosen.source) else []
    elif chosen.spec is not None:
        reader = reader or _reader(ckpt, chosen)
        reader.classes = ckpt.classes  # a standalone model's classes are known once it is loaded
        split = _read_split(reader)
    else:
        split, note = _validation_split(ckpt)
        notes += [note] if note else []


    units = int(np.prod(model.output_shape[1:]))
    if ckpt.task == "regression" and split.y.shape[1] != units:
        raise DataError(f"{chosen.source}: {chosen.description}: the model has {units} outputs but the data has "
                        f"{split.y.shape[1]} target column(s) ({', '.join(ckpt.labels)})",
                        hint="name the model's target columns with --label COLUMN (once per target)")
    encoding = ckpt.encoding(units)
    dataset = evaluation_dataset(split, batch_size=batch, encoding=encoding, num_classes=len(ckpt.classes or []))
    scores = model.evaluate(dataset, verbose=0, return_dict=True)
    order = ckpt.metric_names()  # loss first, then the config's metrics, as training logs them
    metrics = {name: float(scores[name]) for name in sorted(scores, key=lambda n: (order.index(n) if n in order
                                                                                  else len(order), n))}
    if reader is not None and reader.dropped:
        notes.append(f"left out {reader.dropped:,} row(s) missing a label or a value the run dropped rows for "
                     "(data.missing_label / missing: drop), as training did")
    if chosen.only_classes is not None:
        notes.append(f"only the rows labelled {', '.join(map(repr, chosen.only_classes))} are evaluated (the run's "
                     "data.classes, applied to its own data as training applied it)")
    result = EvalResult(str(ckpt.model_path), chosen.description, chosen.source, split.rows, metrics, ckpt.task,
                        notes=notes, only_classes=chosen.only_classes)
    if ckpt.task == "classification":
        inference = Inference(model, ckpt, batch)
        predicted, _ = inference.decode(inference.outputs(split.x))
        result.classes = ckpt.classes
        result.confusion = confusion_matrix(split.y, predicted, len(ckpt.classes))
        result.per_class = per_class(result.confusion, ckpt.classes)
        if plot is not None:
            write_confusion(plot, result.confusion, ckpt.classes, f"{chosen.description}")
            result.notes.append(f"confusion matrix written to {plot}")
            if images is not None:
                wrong = plot.with_name(f"{plot.stem}-misclassified.png")
                write_misclassified(wrong, split.x, split.y, predicted, ckpt.classes, chosen.description)
                result.notes.append(f"misclassified images written to {wrong}")
    return result


def check_plot_path(plot: Path, ckpt: Checkpoint) -> None:
    """--plot FILE: a .png for a classifier, in a folder that exists and can be written — checked before
    any work."""
    if ckpt.task != "classification":
        raise UsageError(f"--plot {plot}: a confusion matrix needs a classification model; this one is regression")
    if plot.suffix.lower() != ".png":
        raise UsageError(f"--plot {plot}: expected a .png file name")
    if not plot.parent.is_dir():
        raise UsageError(f"--plot {plot}: the folder {plot.parent} does not exist")
    check_writable_folder(plot.parent, f"--plot {plot}")


def _reader(ckpt: Checkpoint, chosen: _Data) -> InputReader:
    missing_label = ckpt.loaded.config.data.missing_label if ckpt.loaded is not None else "error"
    return InputReader(chosen.spec, chosen.source, features=ckpt.features, input_shape=ckpt.input_shape,
                       labels=ckpt.labels, task=ckpt.task, classes=ckpt.classes, only_classes=chosen.only_classes,
                       typed=ckpt.typed, drop_missing=True, missing_label=missing_label)


def _images(ckpt: Checkpoint, chosen: _Data) -> ImageList:
    """An image model's evaluation images: a folder or table, or the run's validation split rebuilt by
    the function training used."""
    if chosen.spec is not None:
        return list_for_evaluation(chosen.spec, ckpt.inputs, ckpt.labels[0], chosen.source, chosen.only_classes)
    _, held = split_validation(ckpt.loaded.config, train_images(ckpt.loaded.config))
    return held


def _read_split(reader: InputReader) -> Split:
    xs, ys = [], []
    for batch in reader.batches():
        xs.append(batch.x)
        ys.append(batch.y)
    if not xs:
        which = f" with a label in data.classes {reader.only_classes}" if reader.only_classes is not None else ""
        raise DataError(f"{reader.role}: {reader.source.spec}: has no data rows{which} to evaluate")
    return Split(concat_rows(xs), np.concatenate(ys), reader.role)


def _validation_split(ckpt: Checkpoint) -> tuple[Split, str | None]:
    """The run's validation rows, rebuilt exactly as training built them (same function, same seed)."""
    config = ckpt.loaded.config
    if any(part.get("streamed") for part in ckpt.manifest.get("data", {}).get("train", [])):
        return _streamed_validation_split(ckpt)
    plans = [FeaturePlan.from_record(r) for r in ckpt.typed] if ckpt.typed is not None else None
    train = read_train(config, plans, typed=plans is not None)
    _, held = validation_split(config, ckpt.task, train)
    frame = train.take(held)
    if ckpt.features is not None and frame.feature_names != ckpt.features:
        raise DataError(f"data.train: {config.data.train}: its columns are no longer the run's features — the "
                        "validation split cannot be rebuilt", hint="pass --data SOURCE")
    note = None
    recorded = {f["path"]: f.get("sha256") for part in ckpt.manifest.get("data", {}).get("train", [])
                for f in part.get("files", [])}
    changed = [p for p in train.source.paths if str(p) in recorded and recorded[str(p)] != sha256(p)]
    if changed:
        note = (f"warning: {changed[0]} changed since the run was trained: the validation split is rebuilt from "
                "today's file and may not hold the rows the run was validated on")
    if ckpt.task == "classification":
        y = class_indices(frame.y, ckpt.classes, "data.validation", frame.source.spec)
    else:
        y = regression_targets(frame.y, "data.validation", frame.source.spec, ckpt.labels)
    x = frame.x if plans is not None else frame.x.reshape((frame.rows, *ckpt.input_shape))
    return Split(x, y, "validation"), note


def _streamed_validation_split(ckpt: Checkpoint) -> tuple[Split, str | None]:
    """A streamed run held out its validation rows by a hash of each row's number, as it read the files:
    the same scan finds them again. Only those rows are kept in memory, chunk by chunk."""
    prepared = prepare_stream(ckpt.loaded.config)
    if ckpt.task == "classification" and list(prepared.classes) != list(ckpt.classes):
        raise DataError(f"data.train: {ckpt.loaded.config.data.train}: its labels are no longer the run's classes "
                        f"({', '.join(map(str, ckpt.classes))}) — the validation split cannot be rebuilt",
                        hint="pass --data SOURCE")
    xs, ys = [], []
    for x, y in prepared.validation.chunks():
        xs.append(x)
        ys.append(y)
    split = Split(np.concatenate(xs).reshape((-1, *ckpt.input_shape)), np.concatenate(ys), "validation")
    recorded = ckpt.manifest.get("rows", {}).get("validation")
    note = None
    if recorded is not None and recorded != split.rows:
        note = (f"warning: data.train now holds {split.rows:,} validation rows where the run held out {recorded:,}: "
                "the files changed since the run was trained")
    return split, note
