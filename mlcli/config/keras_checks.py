"""Every Keras name and argument of a config, checked against the Keras index without TensorFlow:
layer, optimizer, schedule, loss and metric names, their argument names, and argument values of the
kinds Keras refused when the index was made (`units: many`, `rate: 1.5`, `activation: relux`).

The rules are mlcli.model.build's (which names resolve, which arguments a class takes, numbers where
a default is a number), so `mlcli validate` and train, which runs these checks before it imports
TensorFlow, refuse the same configs with the same messages, naming the same keys.
"""

from __future__ import annotations

import functools
from typing import Any

from mlcli import console
from mlcli.config.backbone_checks import backbone_problems
from mlcli.config.keras_index import KerasIndex, is_current, read_index, stale_note
from mlcli.config.keras_rules import FLOATS, INTEGERS, KIND_TEXT, REFUSED, closest, did_you_mean, is_number, value_kind
from mlcli.config.load import LoadedConfig
from mlcli.config.schema import LayerSpec
from mlcli.config.yamlio import KeyPath
from mlcli.errors import ConfigProblem


@functools.lru_cache(maxsize=1)
def keras_index() -> KerasIndex:
    """The shipped index; or when it was made for another Keras than the installed one, the classes a
    config names read from Keras itself (correct, but it imports TensorFlow), said once."""
    index = read_index()
    if is_current(index):
        return index
    console.info(stale_note(index) + ": Keras names are checked with Keras itself, more slowly")
    from mlcli.config import keras_index_build  # deferred: reads the installed Keras (imports TensorFlow)

    return keras_index_build.live_index()


def keras_problems(loaded: LoadedConfig) -> list[ConfigProblem]:
    """Every problem with the config's Keras names and arguments (an empty list when there is none)."""
    index = keras_index()
    config = loaded.config
    found: list[tuple[KeyPath, str]] = []
    # Layers that no config file or --set wrote are the schema's seed network, or finetune's parent's
    # own (described from its checkpoint, never built from the config): nothing to check there.
    if any(path[:1] == ("model",) for path in loaded.positions):
        for position, spec in enumerate(config.model.layers):
            found += _layer(index, spec, ("model", "layers", position))
    for position, spec in enumerate(config.data.augment):
        found += _augmentation(index, spec, ("data", "augment", position))
    if config.finetune.head is not None:
        for position, spec in enumerate(config.finetune.head.layers):
            found += _layer(index, spec, ("finetune", "head", "layers", position))
    found += _optimizer(index, loaded)
    found += _loss(index, loaded)
    found += _metrics(index, loaded)
    return [loaded.problem(path, message) for path, message in found] + backbone_problems(loaded, index)


def _layer(index: KerasIndex, spec: LayerSpec, where: KeyPath) -> list[tuple[KeyPath, str]]:
    if spec.type in ("InputLayer", "Input"):
        return [(where + ("type",),
                 f"{spec.type} is not needed: mlcli adds the input from the data's shape — remove this layer")]
    names = index.class_names("layers")
    if spec.type not in names or spec.type == "Layer":
        return [(where + ("type",), f"{spec.type!r} is not a keras.layers class" + _suggest(spec.type, "layers", names))]
    if spec.type in REFUSED["layers"]:
        return [(where + ("type",), f"{spec.type} runs arbitrary code and cannot be described in a config")]
    return _arguments(index, "layers", spec.type, spec.arguments(), where, "layer")


# Keras's image augmentation layers that are not named Random*: each changes an image, and at inference
# passes it through unchanged. MixUp and CutMix are left out: they mix labels, which a layer of the model never sees.
_AUGMENTATION_EXTRA = ("AugMix", "AutoContrast", "Equalization", "RandAugment", "Solarization")


def augmentation_names(index: KerasIndex) -> list[str]:
    """The keras.layers classes data.augment may name."""
    return [n for n in index.class_names("layers") if n.startswith("Random") or n in _AUGMENTATION_EXTRA]


def _augmentation(index: KerasIndex, spec: LayerSpec, where: KeyPath) -> list[tuple[KeyPath, str]]:
    names = augmentation_names(index)
    if spec.type not in names:
        return [(where + ("type",), f"{spec.type!r} is not a Keras image augmentation layer — expected one of "
                 f"RandomFlip, RandomRotation, RandomZoom, RandomContrast, RandomTranslation, RandomCrop, …"
                 + did_you_mean(spec.type, names))]
    return _arguments(index, "layers", spec.type, spec.arguments(), where, "layer")


def _optimizer(index: KerasIndex, loaded: LoadedConfig) -> list[tuple[KeyPath, str]]:
    config = loaded.config.optimizer
    by_lower = {n.lower(): n for n in index.class_names("optimizers") if n not in REFUSED["optimizers"]}
    found: list[tuple[KeyPath, str]] = []
    rate: Any = config.learning_rate
    if not isinstance(rate, float):
        schedules = index.class_names("schedules")
        if rate.type not in schedules or rate.type in REFUSED["schedules"]:
            found.append((("optimizer", "learning_rate", "type"), f"{rate.type!r} is not a keras.optimizers.schedules "
                          "class" + _suggest(rate.type, "schedules", schedules)))
        else:
            found += _arguments(index, "schedules", rate.type, rate.arguments(), ("optimizer", "learning_rate"),
                                "schedule")
    name = by_lower.get(config.type.lower())
    if name is None:
        return [(("optimizer", "type"), f"{config.type!r} is not a keras.optimizers name"
                 + did_you_mean(config.type.lower(), list(by_lower)))] + found
    # learning_rate is the schema's: a number it has checked, or the schedule checked above.
    return found + _arguments(index, "optimizers", name, config.arguments(), ("optimizer",), "optimizer",
                              given=("learning_rate",))


def _loss(index: KerasIndex, loaded: LoadedConfig) -> list[tuple[KeyPath, str]]:
    loss = loaded.config.loss
    if isinstance(loss, str):
        names = index.names("losses")
        if loss in names:
            return []
        # Strings name functions (snake_case), as Keras's own examples spell them.
        return [(("loss",), f"{loss!r} is not a keras.losses name"
                 + did_you_mean(loss, [n for n in names if n[:1].islower()]))]
    classes = index.class_names("losses")
    if loss.type not in classes or loss.type in REFUSED["losses"]:
        return [(("loss", "type"), f"{loss.type!r} is not a keras.losses class" + _suggest(loss.type, "losses", classes))]
    return _arguments(index, "losses", loss.type, loss.arguments(), ("loss",), "loss")


def _metrics(index: KerasIndex, loaded: LoadedConfig) -> list[tuple[KeyPath, str]]:
    found: list[tuple[KeyPath, str]] = []
    names = index.names("metrics")
    classes = index.class_names("metrics")
    for position, metric in enumerate(loaded.config.metrics):
        if isinstance(metric, str):
            if metric not in names:
                found.append((("metrics", position), f"{metric!r} is not a keras.metrics name"
                              + did_you_mean(metric, [n for n in names if n[:1].islower()])))
        elif metric.type not in classes or metric.type in REFUSED["metrics"]:
            found.append((("metrics", position, "type"),
                          f"{metric.type!r} is not a keras.metrics class" + _suggest(metric.type, "metrics", classes)))
        else:
            found += _arguments(index, "metrics", metric.type, metric.arguments(), ("metrics", position), "metric")
    return found


def _suggest(name: str, kind: str, names: list[str]) -> str:
    """Did-you-mean among the classes a config may name (never a base class such as Layer)."""
    return did_you_mean(name, [n for n in names if n not in REFUSED[kind]])


def _arguments(index: KerasIndex, kind: str, name: str, arguments: dict, where: KeyPath, what: str,
               given: tuple[str, ...] = ()) -> list[tuple[KeyPath, str]]:
    """cls(**arguments) as Keras would take it: unknown names, missing required ones, refused values."""
    described = {a["name"]: a for a in index.arguments(kind, name)}
    accepted = list(described)
    found: list[tuple[KeyPath, str]] = []
    meant = set()  # the arguments unknown keys are misspellings of: not also reported as missing
    for key, value in arguments.items():
        argument = described.get(key)
        if argument is None:
            meant.add(closest(key, accepted))
            found.append((where + (key,), f"{what} {name} has no argument {key!r} — expected one of: "
                          f"{', '.join(accepted)}" + did_you_mean(key, accepted)))
            continue
        problem = _value_problem(index, argument, value)
        if problem:
            found.append((where + (key,), f"{what} {name}: {key} {problem}"))
    missing = [a for a in described.values() if a.get("required") and a["name"] not in arguments
               and a["name"] not in given and a["name"] not in meant]
    if missing:
        found.append((where, f"{what} {name}: missing required argument(s) "
                      f"{', '.join(repr(a['name']) for a in missing)}"))
    return found


def _value_problem(index: KerasIndex, argument: dict, value: Any) -> str | None:
    """What is wrong with one argument's value ("got ... — expected ..."), or None."""
    if argument.get("set_by_class"):
        return f"is set by the class itself — remove {argument['name']}"
    number = argument.get("numeric_default", argument.get("default"))
    if is_number(number) and isinstance(value, (str, bool)):
        # Keras keeps e.g. Adam(beta_1="high") as given and fails only inside fit, with a bare TypeError.
        return f"got {value!r} — expected a number (default {number!r})"
    kind = value_kind(value)
    if kind not in argument.get("refuses", ()):
        return None
    if kind == "text":
        allowed, ignore_case = _strings(index, argument)
        if allowed and (value.lower() in {a.lower() for a in allowed} if ignore_case else value in allowed):
            return None
        return f"got {value!r} — expected {expected(argument)}" + did_you_mean(value, allowed)
    return f"got {value!r} — Keras refuses {KIND_TEXT[kind]} here; expected {expected(argument)}"


def _strings(index: KerasIndex, argument: dict) -> tuple[list[str], bool]:
    rule = argument.get("text", [])
    return (index.names(rule) if isinstance(rule, str) else rule), bool(argument.get("ignore_case"))


def refused_kinds(argument: dict) -> set[str]:
    """The kinds of value refused for an argument: by Keras, and text and booleans by mlcli where the
    default is a number."""
    refuses = set(argument.get("refuses", ()))
    if is_number(argument.get("numeric_default", argument.get("default"))):
        refuses |= {"text", "true", "false"}
    return refuses


def expected(argument: dict) -> str:
    """What an argument takes, in words, from the kinds of value refused for it."""
    refuses = refused_kinds(argument)
    parts = []
    rule = argument.get("text")
    if "text" not in refuses:
        parts.append("text")
    elif isinstance(rule, str):
        parts.append("a dtype name such as float32" if rule == "dtypes" else f"a keras.{rule} name")
    elif rule:
        parts.append("one of " + ", ".join(repr(w) for w in rule) + (" (any case)" if argument.get("ignore_case") else ""))
    numbers = _numbers(refuses)
    if numbers:
        parts.append(numbers)
    if not {"true", "false"} & refuses and not numbers:  # Python's booleans are 0 and 1 to a number check
        parts.append("true or false")
    if "null" not in refuses:
        parts.append("null")
    return " or ".join(parts) if parts else "a value of another kind"


def _numbers(refuses: set[str]) -> str:
    """The numbers an argument takes, in words, from the kinds of number Keras refused."""
    shape = number_shape(refuses)
    if shape is None:
        return ""
    noun = {"int": "a whole number", "float": "a float (with a decimal point)", "any": "a number"}[shape["type"]]
    low, high = shape.get("low"), shape.get("high")
    if shape["type"] == "int" and low is not None:
        return f"{noun} >= {low + (1 if shape.get('low_open') else 0)}"
    if low is not None and high is not None:
        return f"{noun} {'above' if shape.get('low_open') else 'from'} 0 {'below' if shape.get('high_open') else 'to'} 1"
    if low is not None:
        return f"{noun} {'above 0' if shape.get('low_open') else '>= 0'}"
    return noun


def number_shape(refuses: set[str]) -> dict | None:
    """The numbers Keras took for an argument: {"type": int | float | any, "low"/"high": 0/1 bounds
    ("_open" when the bound itself was refused)}, or None when it took no number. Bounds are only
    ever 0 and 1: the probes try -1, 0, 1, 2 and their floats."""
    taken = {kind for kind in INTEGERS + FLOATS if kind not in refuses}
    if not taken:
        return None
    kind = "int" if not taken & set(FLOATS) else "float" if not taken & set(INTEGERS) else "any"
    shape: dict = {"type": kind}
    if not taken & {"negative", "negative_float"}:
        shape["low"], shape["low_open"] = 0, not taken & {"zero", "zero_float"}
        if kind == "int" and shape["low_open"] and "one" not in taken:
            shape["low"] = 1  # 1 refused too: whole numbers from 2
    if kind != "int" and not taken & {"whole", "above_one", "whole_float"}:
        shape["high"], shape["high_open"] = 1, not taken & {"one", "one_float"}
    return shape
