"""Labels: the task they make, their vocabulary, and how they are turned into what the loss wants.

Splits keep labels as class indices (int32, into the sorted vocabulary) or regression targets
(float32, (rows, targets)). The loss decides the encoding the model is fed — one-hot, sparse
indices, a binary column, or the targets as they are — chosen by `label_encoding` and applied by
`encode` in the tf.data pipeline, so memory holds only the indices.
"""

from __future__ import annotations

import numpy as np

from mlcli.config.schema import Config
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


def infer_task(config: Config, y: np.ndarray, role: str) -> str:
    """classification or regression; classes must be finite numbers or text (an inf label would be a class)."""
    task = config.data.task
    if task == "auto" and is_classification_loss(config):
        task = "classification"
    if task == "classification":
        check_finite_labels(y, role, config.data.label_columns()[0])
    if task != "auto":
        return task
    if y.dtype == object:
        raise DataError(
            f"{role}: label column holds text values (e.g. {y[0]!r}) but the loss "
            f"{config.loss if isinstance(config.loss, str) else config.loss.type} is for regression — "
            "use a classification loss such as categorical_crossentropy, or set data.task"
        )
    return "regression"


# ---- the vocabulary ----------------------------------------------------------------------------


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


# ---- labels as a split keeps them ---------------------------------------------------------------


def label_array(columns: list[np.ndarray]) -> np.ndarray:
    """The label column(s) of some rows as one array: one column as it is, several as (rows, columns)."""
    return columns[0] if len(columns) == 1 else np.stack(columns, axis=1)


def single_class_error(spec: str, label: str, found, listed: list | None) -> DataError:
    """data.train holds one class; when data.classes chose the rows, name the listed classes it lacks."""
    absent = [c for c in listed or [] if str(c) != str(found)]
    if not absent:
        return DataError(f"data.train: {spec}: the label column {label!r} has a single class ({found!r}) — "
                         "classification needs at least two")
    return DataError(
        f"data.train: {spec}: of data.classes {listed}, only {found!r} has rows in the label column {label!r} — "
        f"no row is labelled {', '.join(map(repr, absent))}; classification needs at least two classes",
        hint="list in data.classes labels that data.train holds",
    )


def in_classes(y: np.ndarray, classes: list) -> np.ndarray:
    """data.classes: True for the rows whose label is listed (compared as the labels' own type)."""
    return np.isin(y, np.asarray(classes, dtype=y.dtype if y.dtype != object else object))


def class_indices(y: np.ndarray, classes: list, role: str, spec: str, row_offset: int = 0) -> np.ndarray:
    """Labels -> indices into `classes`; an unseen label is a DataError naming it and its row.

    `row_offset`: rows before this batch, so a batch-wise reader names the row in the whole file.
    """
    def unknown(row: int, value) -> DataError:
        return DataError(
            f"{role}: {spec}: row {row + 1 + row_offset}: label {value!r} was not among the training classes "
            f"({', '.join(map(repr, classes[:20]))}{', …' if len(classes) > 20 else ''})"
        )

    found = _number_indices(y, classes)
    if found is not None:
        out, missing = found
        if missing is not None:
            raise unknown(missing, y[missing].item())
        return out
    lookup = {c: i for i, c in enumerate(classes)}
    out = np.empty(len(y), dtype=np.int32)
    for row, value in enumerate(y.tolist()):
        index = lookup.get(value)
        if index is None:
            raise unknown(row, value)
        out[row] = index
    return out


def _number_indices(y: np.ndarray, classes: list) -> tuple[np.ndarray, int | None] | None:
    """class_indices for integer labels and integer classes, or float labels and float classes, by
    sorted search instead of a lookup a row at a time: (indices, the first row whose label is not a
    class, or None). None for any other pairing (bools, text, mixed kinds): the lookup decides those."""
    if not classes or y.ndim != 1:
        return None
    if y.dtype.kind == "i" and all(type(c) is int and -2**63 <= c < 2**63 for c in classes):
        keys = np.array(classes, dtype=np.int64)
    elif y.dtype.kind == "f" and all(type(c) is float for c in classes):
        keys = np.array(classes, dtype=np.float64)
    else:
        return None
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    position = np.minimum(np.searchsorted(ordered, y), len(ordered) - 1)
    hit = ordered[position] == y
    if not hit.all():
        return np.empty(0, dtype=np.int32), int(np.flatnonzero(~hit)[0])
    return order[position].astype(np.int32), None


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
        raise non_finite_label(f"{role}: {spec}", names[col] if col < len(names) else col, row + 1 + row_offset,
                               np.asarray(values[row, col]).item())
    return targets


def non_finite_label(where: str, name, row: int, value) -> DataError:
    """A label that is NaN or infinite: not a target a loss can use, nor a class (each NaN would be one)."""
    return DataError(f"{where}: label {name!r}, row {row}: {value!r} is not a finite number — a label must be a "
                     "finite number or text (fix or drop the row)")


def check_finite_labels(y: np.ndarray, where: str, name) -> None:
    """Number labels must be finite; `y` holds the label values in file order."""
    if y.dtype.kind != "f":
        return
    bad = np.argwhere(~np.isfinite(y.reshape(len(y), -1)))
    if len(bad):
        row = int(bad[0][0])
        raise non_finite_label(where, name, row + 1, y.reshape(len(y), -1)[row, int(bad[0][1])].item())


# ---- what the loss is fed ---------------------------------------------------------------------


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


def encode(tf, y, encoding: str, num_classes: int):
    """A batch of split labels as the loss wants them, inside tf.data (`tf`: the imported module)."""
    if encoding == "onehot":
        return tf.one_hot(y, num_classes, dtype=tf.float32)
    if encoding == "binary":
        return tf.cast(tf.reshape(y, (-1, 1)), tf.float32)
    return y  # sparse class indices, or regression targets as they are


def as_numpy_targets(y: np.ndarray, encoding: str, num_classes: int) -> np.ndarray:
    """`encode` in numpy: the targets exactly as the loss sees them (for checks and tests)."""
    if encoding == "onehot":
        return np.eye(num_classes, dtype=np.float32)[y]
    if encoding == "binary":
        return y.reshape(-1, 1).astype(np.float32)
    return y
