"""training.class_weight: each class's weight in the loss, as Keras's fit takes it ({class index: weight})."""

from __future__ import annotations

import numpy as np

from mlcli.config.load import LoadedConfig
from mlcli.errors import ConfigError

_KEY = ("training", "class_weight")


def class_weights(loaded: LoadedConfig, prepared) -> dict[int, float] | None:
    """None (every class weighs 1), `balanced` from the training split's class counts (scikit-learn's
    rule: rows / (classes * rows of the class)), or the config's mapping by label."""
    wanted = loaded.config.training.class_weight
    if wanted is None:
        return None
    if prepared.task != "classification":
        raise ConfigError(loaded.problem(_KEY, "class weights are for classification, and this run is a regression "
                                         "— remove training.class_weight"))
    classes = prepared.classes
    if wanted == "balanced":
        counts = _class_counts(loaded, prepared, len(classes))
        total = counts.sum()
        return {i: float(total / (len(classes) * count)) if count else 1.0 for i, count in enumerate(counts)}
    weights = {i: 1.0 for i in range(len(classes))}
    for label, weight in wanted.items():
        weights[_class_index(loaded, label, classes)] = float(weight)
    return weights


def by_label(weights: dict[int, float] | None, classes: list | None) -> dict | None:
    """The weights keyed by label, as run.json records them."""
    if weights is None:
        return None
    return {str(classes[i]): weight for i, weight in weights.items()}


def _class_counts(loaded: LoadedConfig, prepared, classes: int) -> np.ndarray:
    split = prepared.train
    if split.streamed:
        raise ConfigError(loaded.problem(_KEY, "balanced counts the classes of the training split, which "
                                         "data.stream does not hold in memory — give the weights as "
                                         "{label: weight, ...}, or set data.stream: false"))
    return np.bincount(np.asarray(split.y, dtype=np.int64), minlength=classes)


def _class_index(loaded: LoadedConfig, label, classes: list) -> int:
    """A YAML key to its class: the same value (1 and "1" are different labels), else the same text
    (YAML reads `yes:` as text, and a key like 1.0 may name the label 1.0)."""
    for index, value in enumerate(classes):
        if type(value) is type(label) and value == label:
            return index
    for index, value in enumerate(classes):
        if str(value) == str(label):
            return index
    shown = ", ".join(map(repr, classes[:20])) + (", …" if len(classes) > 20 else "")
    raise ConfigError(loaded.problem(_KEY + (label,), f"{label!r} is not a class of the training data — the classes "
                                     f"are {shown}"))
