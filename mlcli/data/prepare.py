"""From a config's data section to training-ready splits: task, label vocabulary, validation split.

Labels are kept as class indices (classification) or floats (regression); the encoding the loss
needs (one-hot, sparse, binary) is applied in the tf.data pipeline, so memory stays small.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlcli.config.schema import Config
from mlcli.data.frames import Frame, load_frame
from mlcli.errors import DataError

# Normalised loss names (lower case, no underscores) and the label encoding each needs.
_ONE_HOT = {"categoricalcrossentropy", "categoricalfocalcrossentropy", "categoricalhinge"}
_SPARSE = {"sparsecategoricalcrossentropy"}
_BINARY = {"binarycrossentropy", "binaryfocalcrossentropy", "hinge", "squaredhinge"}


def loss_name(config: Config) -> str:
    name = config.loss if isinstance(config.loss, str) else config.loss.type
    return name.replace("_", "").lower()


def loss_family(name: str) -> str | None:
    """onehot | sparse | binary for a classification loss name (any spelling Keras accepts), else None."""
    key = name.replace("_", "").lower()
    for family, names in (("onehot", _ONE_HOT), ("sparse", _SPARSE), ("binary", _BINARY)):
        if key in names:
            return family
    return None


def is_classification_loss(config: Config) -> bool:
    return loss_family(loss_name(config)) is not None


@dataclass
class Split:
    """One split in memory: float32 features and encoded-later targets."""

    x: np.ndarray
    y: np.ndarray  # int32 class indices (classification) or float32 (rows, targets) (regression)
    name: str

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])


@dataclass
class Prepared:
    task: str  # classification | regression
    classes: list | None  # sorted label vocabulary (classification)
    feature_names: list[str]
    label_names: list[str]
    input_shape: tuple[int, ...]
    train: Split
    validation: Split | None
    test: Split | None
    files: dict[str, list[dict]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def num_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else len(self.label_names)


def infer_task(config: Config, y: np.ndarray, role: str) -> str:
    if config.data.task != "auto":
        return config.data.task
    if is_classification_loss(config):
        return "classification"
    if y.dtype == object:
        raise DataError(
            f"{role}: label column holds text values (e.g. {y[0]!r}) but the loss "
            f"{config.loss if isinstance(config.loss, str) else config.loss.type} is for regression — "
            "use a classification loss such as categorical_crossentropy, or set data.task"
        )
    return "regression"


def sorted_vocabulary(y: np.ndarray) -> list:
    """Sorted distinct labels as plain JSON-able Python values."""
    return [v.item() if hasattr(v, "item") else v for v in np.unique(y)]


def adopt_vocabulary(found: list, vocabulary: list | None, notes: list[str]) -> list:
    """finetune keeping the parent's output layer: the parent's classes, in its output order, when this
    data's labels are all among them — data that lacks one of them still trains that layer. Otherwise
    the data's own vocabulary (the output-width check then says what to do)."""
    if vocabulary is None or found == vocabulary:
        return found
    def typed(labels: list) -> set:  # 1, 1.0 and True are one set member; as labels they differ
        return {(type(c), c) for c in labels}

    present = typed(found)
    if not present <= typed(vocabulary):
        return found
    missing = [c for c in vocabulary if (type(c), c) not in present]
    notes.append(f"the data has {len(found)} of the parent's {len(vocabulary)} classes (none of "
                 f"{', '.join(map(repr, missing[:12]))}{', …' if len(missing) > 12 else ''}): the parent's classes and "
                 "output layer are kept")
    return list(vocabulary)


def class_indices(y: np.ndarray, classes: list, role: str, spec: str, row_offset: int = 0) -> np.ndarray:
    """Labels -> indices into `classes`; an unseen label is a DataError naming it and its row.

    `row_offset`: rows before this batch, so a batch-wise reader names the row in the whole file.
    """
    lookup = {c: i for i, c in enumerate(classes)}
    out = np.empty(len(y), dtype=np.int32)
    for row, value in enumerate(y.tolist()):
        index = lookup.get(value)
        if index is None:
            raise DataError(
                f"{role}: {spec}: row {row + 1 + row_offset}: label {value!r} was not among the training classes "
                f"({', '.join(map(repr, classes[:20]))}{', …' if len(classes) > 20 else ''})"
            )
        out[row] = index
    return out


def regression_targets(y: np.ndarray, role: str, spec: str, names: list[str], row_offset: int = 0) -> np.ndarray:
    values = y.reshape(len(y), -1)
    try:
        targets = values.astype(np.float32)
    except (TypeError, ValueError):
        for row, value in enumerate(values.tolist()):
            for col, item in enumerate(value):
                try:
                    float(item)
                except (TypeError, ValueError):
                    raise DataError(
                        f"{role}: {spec}: label column {names[col] if col < len(names) else col!r}, "
                        f"row {row + 1 + row_offset}: "
                        f"{item!r} is not a number — regression targets must be numeric"
                    ) from None
        raise
    bad = np.argwhere(~np.isfinite(targets))
    if len(bad):
        row, col = int(bad[0][0]), int(bad[0][1])
        raise DataError(f"{role}: {spec}: label {names[col] if col < len(names) else col!r}, row {row + 1 + row_offset}: "
                        f"{np.asarray(values[row, col]).item()!r} is not a finite number")
    return targets


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): `fraction` of each class held out, seeded, order kept."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        # At least one row of every class stays in training: holding a whole class out would make
        # its validation rows "unknown labels" (and a file that is fine would fail).
        count = min(int(round(fraction * len(rows))), len(rows) - 1)
        held.append(rng.permutation(rows)[:count])
    mask = np.zeros(len(labels), dtype=bool)
    mask[np.concatenate(held) if held else []] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def random_split(rows: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    permutation = np.random.default_rng(seed).permutation(rows)
    mask = np.zeros(rows, dtype=bool)
    mask[permutation[: int(round(fraction * rows))]] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def keep_classes(frame: Frame, classes: list | None, role: str) -> Frame:
    """data.classes: only the rows whose label is listed (e.g. digits 0-4 for a base model)."""
    if classes is None:
        return frame
    keep = np.isin(frame.y, np.asarray(classes, dtype=frame.y.dtype if frame.y.dtype != object else object))
    if not keep.any():
        raise DataError(
            f"{role}: {frame.source.spec}: no row has a label in data.classes {classes} — "
            f"the labels there are e.g. {', '.join(map(repr, sorted_vocabulary(frame.y)[:10]))}"
        )
    return frame.take(np.flatnonzero(keep))


def read_train(config: Config) -> Frame:
    """data.train as training reads it: every row, then only those with a label in data.classes."""
    data = config.data
    frame = load_frame(data.train, "data.train", labels=data.label_columns(), features=data.features)
    return keep_classes(frame, data.classes, "data.train")


def validation_split(config: Config, task: str, train: Frame) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) of a fractional data.validation, from the config's seed.

    The one place the split is made: training calls it, and `mlcli evaluate` calls it again on the
    run's own config to get back exactly the rows the run was validated on.
    """
    fraction = config.data.validation
    if task == "classification":
        keep, held = stratified_split(train.y, fraction, config.seed)
    else:
        keep, held = random_split(train.rows, fraction, config.seed)
    if len(held) == 0:
        raise DataError(
            f"data.validation: {fraction} of {train.rows} training rows is an empty split — "
            "use a larger fraction, a validation file, or null"
        )
    if len(keep) == 0:
        raise DataError(f"data.validation: {fraction} leaves no training rows")
    return keep, held


def prepare(config: Config, vocabulary: list | None = None) -> Prepared:
    """Read train/validation/test as the config says; fit nothing yet (normalization is in the model)."""
    data = config.data
    labels = data.label_columns()
    train = read_train(config)
    task = infer_task(config, train.y, "data.train")
    if task == "classification" and len(labels) > 1:
        raise DataError("data.label: several label columns are for regression — give one label column")
    files = {"train": train.facts()}

    if task == "regression":
        # Checked on the whole file, before the split, so a bad target is named by its row in the file.
        regression_targets(train.y, "data.train", train.source.spec, labels)
    validation_frame: Frame | None = None
    if isinstance(data.validation, float):
        keep, held = validation_split(config, task, train)
        validation_frame = train.take(held)
        train = train.take(keep)
    elif isinstance(data.validation, str):
        validation_frame = keep_classes(
            load_frame(data.validation, "data.validation", labels=labels, features=train.feature_names),
            data.classes, "data.validation",
        )
        files["validation"] = validation_frame.facts()
    test_frame = None
    if data.test is not None:
        test_frame = keep_classes(
            load_frame(data.test, "data.test", labels=labels, features=train.feature_names), data.classes, "data.test"
        )
        files["test"] = test_frame.facts()

    for frame, role in ((validation_frame, "data.validation"), (test_frame, "data.test")):
        if frame is not None and frame.x.shape[1:] != train.x.shape[1:]:
            raise DataError(
                f"{role}: {frame.source.spec}: features have shape {frame.x.shape[1:]} but training features have "
                f"{train.x.shape[1:]}"
            )

    classes = None
    notes: list[str] = []
    if task == "classification":
        classes = sorted_vocabulary(train.y)
        if len(classes) < 2:
            raise DataError(
                f"data.train: {train.source.spec}: the label column {labels[0]!r} has a single class "
                f"({classes[0]!r}) — classification needs at least two"
            )
        classes = adopt_vocabulary(classes, vocabulary, notes)

    def to_split(frame: Frame | None, name: str, role: str) -> Split | None:
        if frame is None:
            return None
        if task == "classification":
            y = class_indices(frame.y, classes, role, frame.source.spec)
        else:
            y = regression_targets(frame.y, role, frame.source.spec, labels)
        return Split(frame.x, y, name)

    return Prepared(
        task=task,
        classes=classes,
        feature_names=train.feature_names,
        label_names=train.label_names,
        input_shape=tuple(int(d) for d in train.x.shape[1:]),
        train=to_split(train, "train", "data.train"),
        validation=to_split(validation_frame, "validation", "data.validation"),
        test=to_split(test_frame, "test", "data.test"),
        files=files,
        notes=notes,
    )


def label_encoding(config: Config, task: str, output_units: int, num_classes: int) -> str:
    """How class indices are fed to the loss: onehot, sparse, binary (one unit) or regression."""
    if task == "regression":
        return "regression"
    name = loss_name(config)
    if name in _SPARSE:
        return "sparse"
    if name in _BINARY and output_units == 1:
        return "binary"
    return "onehot"
