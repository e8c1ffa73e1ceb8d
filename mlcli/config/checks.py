"""Cross-field checks that need no data and no TensorFlow."""

from __future__ import annotations

import re
from typing import Iterable

from mlcli.config.keras_checks import keras_problems
from mlcli.config.load import LoadedConfig
from mlcli.config.schema import Config
from mlcli.data.columns import label_role
from mlcli.errors import ConfigError, ConfigProblem
from mlcli.model.heads import apply_head

_CROSSENTROPY = {"categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
                 "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "BinaryCrossentropy",
                 "categorical_focal_crossentropy", "binary_focal_crossentropy"}


def snake_case(name: str) -> str:
    """Keras's default name for a metric class: AUC -> auc, TopKCategoricalAccuracy -> top_k_..."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def metric_base_names(config: Config) -> list[str]:
    """The names Keras logs for the configured loss and metrics (without val_/test_ prefixes)."""
    names = ["loss"]
    for metric in config.metrics:
        if isinstance(metric, str):
            names.append(metric)
        else:
            names.append(str(metric.arguments().get("name") or snake_case(metric.type)))
    return names


def has_validation(config: Config) -> bool:
    return config.data.validation is not None


def computed_metrics(config: Config) -> list[str]:
    """Every metric name a run of this config reports: train, val_ (with validation), test_ (with test)."""
    base = metric_base_names(config)
    names = list(base)
    if has_validation(config):
        names += [f"val_{n}" for n in base]
    if config.data.test is not None:
        names += [f"test_{n}" for n in base]
    return names


def check_config(loaded: LoadedConfig, gates: Iterable[str] = ()) -> None:
    """Every cross-field problem at once, as a ConfigError (exit 2)."""
    config = loaded.config
    problems: list[ConfigProblem] = []
    names = computed_metrics(config)
    during_training = [n for n in names if not n.startswith("test_")]

    es = config.training.early_stopping
    if es is not None and es.monitor not in during_training:
        problems.append(loaded.problem(
            ("training", "early_stopping", "monitor"),
            f"{es.monitor!r} is not computed during training — expected one of {', '.join(during_training)}"
            + ("; val_ metrics need data.validation" if es.monitor.startswith("val_") and not has_validation(config) else ""),
        ))
    monitor = config.training.checkpoint.monitor
    if has_validation(config) and monitor not in during_training:
        problems.append(loaded.problem(
            ("training", "checkpoint", "monitor"),
            f"{monitor!r} is not computed during training — expected one of {', '.join(during_training)}",
        ))

    layers = len(config.model.layers)
    head = config.finetune.head
    if head is not None and head.replace > layers:
        problems.append(loaded.problem(
            ("finetune", "head", "replace"),
            f"{head.replace} is more than the {layers} layer(s) in model.layers — expected at most {layers}",
        ))
    replace = head.replace if head and head.replace <= layers else 0  # too many is reported above
    final_layers = len(apply_head(config.model.layers, replace, head.layers if head else []))
    for key in ("freeze", "unfreeze"):
        for index, selector in enumerate(getattr(config.finetune, key)):
            if isinstance(selector, int) and not -final_layers <= selector < final_layers:
                problems.append(loaded.problem(
                    ("finetune", key, index),
                    f"layer index {selector} is out of range — the model has {final_layers} layer(s), "
                    f"so indices run from {-final_layers} to {final_layers - 1}",
                ))

    loss = config.loss if isinstance(config.loss, str) else config.loss.type
    if config.data.task == "regression" and loss in _CROSSENTROPY:
        problems.append(loaded.problem(
            ("loss",), f"{loss} needs class labels but data.task is regression — use e.g. mse or mae",
        ))
    labels = config.data.label_columns()
    if len(labels) > 1 and config.data.task == "classification":
        problems.append(loaded.problem(
            ("data", "label"), "several label columns are for regression — give one label column for classification",
        ))
    features = config.data.features
    for index, name in enumerate([features] if isinstance(features, str) else features or []):
        if name in labels:  # the model would read the answer it is asked to predict
            key = ("data", "features") if isinstance(features, str) else ("data", "features", index)
            problems.append(loaded.problem(key, f"{name!r} is {label_role(labels)} (data.label), so it cannot "
                                                "also be a feature — remove it from data.features"))

    problems += keras_problems(loaded)
    for gate in gates:
        if gate not in names:
            problems.append(ConfigProblem(
                "", f"gate metric {gate!r} is never computed by this config — expected one of {', '.join(names)}",
                "--fail-under/--fail-over",
            ))
    problems += _feature_problems(loaded)
    if problems:
        raise ConfigError(problems)


def _feature_problems(loaded: LoadedConfig) -> list[ConfigProblem]:
    """data.features against data.exclude and data.label; typed columns against data.stream; class
    weights against the task."""
    data = loaded.config.data
    problems = []
    listed = data.feature_columns()
    listed = [listed] if isinstance(listed, str) else list(listed or [])
    labels = data.label_columns()
    for index, name in enumerate(data.exclude):
        if name in listed:
            problems.append(loaded.problem(("data", "exclude", index), f"{name!r} is also listed in data.features "
                                           "— a column is either a feature or excluded; remove it from one of them"))
        elif name in labels:
            problems.append(loaded.problem(("data", "exclude", index), f"{name!r} is the label column — the label is "
                                           "never a feature already; remove it from data.exclude"))
    if data.stream is True and data.feature_specs():
        first = next(i for i, item in enumerate(data.features) if not isinstance(item, str))
        problems.append(loaded.problem(("data", "features", first), "typed features ({name, type, ...}) are not "
                                       "supported with data.stream: true yet — set data.stream: false (or auto) to "
                                       "load the table into memory"))
    problems += _image_problems(loaded)
    if loaded.config.training.class_weight is not None and data.task == "regression":
        problems.append(loaded.problem(("training", "class_weight"), "class weights are for classification but "
                                       "data.task is regression — remove training.class_weight"))
    return problems


def _image_problems(loaded: LoadedConfig) -> list[ConfigProblem]:
    """data.image against the keys that only tables read, and data.augment without images."""
    data = loaded.config.data
    if data.image is None:
        if data.augment:
            return [loaded.problem(("data", "augment"), "augmentation layers are for image data — add data.image: "
                                   "{size: [H, W]} (and a folder of class subfolders as data.train), or remove "
                                   "data.augment")]
        return []
    problems = []
    if data.features is not None:
        problems.append(loaded.problem(("data", "features"), "image data has no feature columns: the image is the "
                                       "input — remove data.features"))
    if data.exclude:
        problems.append(loaded.problem(("data", "exclude"), "image data has no feature columns to exclude — remove "
                                       "data.exclude"))
    if data.task == "regression":
        problems.append(loaded.problem(("data", "task"), "image data is for classification here — use "
                                       "data.task: classification (or auto)"))
    return problems
