"""From a config's data section to training-ready splits: task, label vocabulary, validation split.

Labels are kept as class indices (classification) or floats (regression); how they become what the
loss wants is mlcli.data.labels's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlcli.config.schema import Config
from mlcli.data.feature_types import FeaturePlan, plan_features
from mlcli.data.fit_features import FittedFeature, fit_features
from mlcli.data.frames import Frame, load_frame
from mlcli.data.labels import (
    adopt_vocabulary,
    class_indices,
    in_classes,
    infer_task,
    regression_targets,
    single_class_error,
    sorted_vocabulary,
)
from mlcli.data.split import Split
from mlcli.data.stream import StreamSplit
from mlcli.errors import ConfigError, ConfigProblem, DataError


@dataclass
class Prepared:
    task: str  # classification | regression
    classes: list | None  # sorted label vocabulary (classification)
    feature_names: list[str]
    label_names: list[str]
    input_shape: tuple[int, ...]
    train: Split | StreamSplit  # one interface (mlcli.data.split)
    validation: Split | StreamSplit | None
    test: Split | StreamSplit | None
    files: dict[str, list[dict]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    features: list[FittedFeature] | None = None  # typed features, fitted on the training split; None: plain floats
    inputs: dict | None = None  # image data: {kind: image, size, channels, ...} (mlcli.data.image_prepare)

    def feature_facts(self) -> list:
        """run.json's and the model's `features`: the column names in input order, or for typed
        features each one's record (type, whether inferred, missing policy and count, statistics)."""
        if self.features is None:
            return list(self.feature_names)
        return [feature.record() for feature in self.features]

    @property
    def num_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else len(self.label_names)


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
    keep = in_classes(frame.y, classes)
    if not keep.any():
        raise DataError(
            f"{role}: {frame.source.spec}: no row has a label in data.classes {classes} — "
            f"the labels there are e.g. {', '.join(map(repr, sorted_vocabulary(frame.y)[:10]))}"
        )
    return frame.take(np.flatnonzero(keep))


def read_train(config: Config, plans: list[FeaturePlan] | None = None, typed: bool = True) -> Frame:
    """data.train as training reads it: every row (but those dropped for a missing value), then only
    those with a label in data.classes.

    The feature types are the config's and the data's (mlcli.data.feature_types), or `plans` when given
    (the run's own, recorded: evaluate rebuilding a validation split, finetune reading new data the
    way its parent was trained); `typed=False` keeps the plain float path (a plain parent)."""
    data = config.data
    where = f"data.train: {data.train}"
    if plans is not None:
        features, exclude = [p.name for p in plans], []
        choose = _fixed(plans)
    else:
        features, exclude = data.feature_columns(), data.exclude
        choose = (lambda table, names: plan_features(table, names, data, where)) if typed else _fixed(None)
    frame = load_frame(data.train, "data.train", labels=data.label_columns(), features=features, exclude=exclude,
                       choose_types=choose, missing_label=data.missing_label)
    wanted = plans is not None or (typed and (data.feature_specs() or data.missing not in ("auto", "error")))
    if wanted and frame.plans is None:
        # Only an array file has no columns to type.
        raise ConfigError(ConfigProblem("data.features", "typed features (declared types, or data.missing filling "
                                        "or dropping values) need a table — an .npz file holds arrays", where),
                          hint="give data.train as .csv or .parquet, or leave data.features and data.missing as they are")
    return keep_classes(frame, data.classes, "data.train")


def _fixed(plans: list[FeaturePlan] | None):
    """A choice of feature types that is already made (the training file's, for its validation and test)."""
    return lambda table, names: plans


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


def prepare(config: Config, vocabulary: list | None = None, plans: list[FeaturePlan] | None = None,
            typed: bool = True) -> Prepared:
    """Read train/validation/test as the config says; typed features are fitted on the training split
    (the plain path's normalization is fitted when the model is built). `plans`, `typed`: read_train's."""
    data = config.data
    labels = data.label_columns()
    train = read_train(config, plans, typed)
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
        validation_frame = _read_other(config, "validation", train)
        files["validation"] = validation_frame.facts()
    test_frame = None
    if data.test is not None:
        test_frame = _read_other(config, "test", train)
        files["test"] = test_frame.facts()

    for frame, role in ((validation_frame, "data.validation"), (test_frame, "data.test")):
        if frame is not None and train.plans is None and frame.x.shape[1:] != train.x.shape[1:]:
            raise DataError(
                f"{role}: {frame.source.spec}: features have shape {frame.x.shape[1:]} but training features have "
                f"{train.x.shape[1:]}"
            )

    classes = None
    notes: list[str] = []
    if task == "classification":
        classes = sorted_vocabulary(train.y)
        if len(classes) < 2:
            raise single_class_error(train.source.spec, labels[0], classes[0], data.classes)
        classes = adopt_vocabulary(classes, vocabulary, notes)

    def to_split(frame: Frame | None, name: str, role: str) -> Split | None:
        if frame is None:
            return None
        if task == "classification":
            y = class_indices(frame.y, classes, role, frame.source.spec)
        else:
            y = regression_targets(frame.y, role, frame.source.spec, labels)
        return Split(frame.x, y, name)

    fitted = None
    if train.plans is not None:  # the training split only: no validation or test row is seen
        fitted = fit_features(train.plans, train.x, data.normalize)
    for frame, role in ((train, "data.train"), (validation_frame, "data.validation"), (test_frame, "data.test")):
        if frame is not None and frame.dropped:
            notes.append(f"{role}: left out " + ", ".join(f"{count:,} row(s) with a {why}"
                                                          for why, count in frame.dropped.items()))
    return Prepared(
        task=task,
        classes=classes,
        feature_names=train.feature_names,
        label_names=train.label_names,
        input_shape=(len(train.feature_names),) if fitted else tuple(int(d) for d in train.x.shape[1:]),
        train=to_split(train, "train", "data.train"),
        validation=to_split(validation_frame, "validation", "data.validation"),
        test=to_split(test_frame, "test", "data.test"),
        files=files,
        notes=notes,
        features=fitted,
    )


def _read_other(config: Config, role: str, train: Frame) -> Frame:
    """data.validation (a file) or data.test, read with the training file's columns and feature types."""
    data = config.data
    frame = load_frame(getattr(data, role), f"data.{role}", labels=data.label_columns(), features=train.feature_names,
                       choose_types=_fixed(train.plans), missing_label=data.missing_label)
    return keep_classes(frame, data.classes, f"data.{role}")
