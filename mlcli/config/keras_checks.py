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
from mlcli.config.keras_index import KerasIndex, is_current, read_index
from mlcli.config.keras_rules import KIND_TEXT, REFUSED, closest, did_you_mean, is_number, value_kind
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
    from mlcli.config import keras_index_build  # deferred: reads the installed Keras (imports TensorFlow)

    live = keras_index_build.live_index()
    console.info(f"note: mlcli's Keras index is out of date (made for Keras {index.keras}, Keras {live.keras} "
                 "is installed): Keras names were checked with Keras itself, more slowly; `make keras-index` "
                 "updates it")
    return live


def keras_problems(loaded: LoadedConfig) -> list[ConfigProblem]:
    """Every problem with the config's Keras names and arguments (an empty list when there is none)."""
    index = keras_index()
    config = loaded.config
    found: list[tuple[KeyPath, str]] = []
    for index_, spec in enumerate(config.model.layers):
        found += _layer(index, spec, ("model", "layers", index_))
    if config.finetune.head is not None:
        for index_, spec in enumerate(config.finetune.head.layers):
            found += _layer(index, spec, ("finetune", "head", "layers", index_))
    found += _optimizer(index, loaded)
    found += _loss(index, loaded)
    found += _metrics(index, loaded)
    return [loaded.problem(path, message) for path, message in found]


def _layer(index: KerasIndex, spec: LayerSpec, where: KeyPath) -> list[tuple[KeyPath, str]]:
    if spec.type in ("InputLayer", "Input"):
        return [(where + ("type",),
                 f"{spec.type} is not needed: mlcli adds the input from the data's shape — remove this layer")]
    names = index.class_names("layers")
    if spec.type not in names or spec.type == "Layer":
        return [(where + ("type",), f"{spec.type!r} is not a keras.layers class" + did_you_mean(spec.type, names))]
    if spec.type in REFUSED["layers"]:
        return [(where + ("type",), f"{spec.type} runs arbitrary code and cannot be described in a config")]
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
                          "class" + did_you_mean(rate.type, schedules)))
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
        return [(("loss", "type"), f"{loss.type!r} is not a keras.losses class" + did_you_mean(loss.type, classes))]
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
                          f"{metric.type!r} is not a keras.metrics class" + did_you_mean(metric.type, classes)))
        else:
            found += _arguments(index, "metrics", metric.type, metric.arguments(), ("metrics", position), "metric")
    return found


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
        return f"got {value!r} — expected {expected(index, argument)}" + did_you_mean(value, allowed)
    return f"got {value!r} — Keras refuses {KIND_TEXT[kind]} here; expected {expected(index, argument)}"


def _strings(index: KerasIndex, argument: dict) -> tuple[list[str], bool]:
    rule = argument.get("text", [])
    return (index.names(rule) if isinstance(rule, str) else rule), bool(argument.get("ignore_case"))


def expected(index: KerasIndex, argument: dict) -> str:
    """What an argument takes, in words, from the kinds of value Keras refused for it."""
    refuses = set(argument.get("refuses", ()))
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
    if not {"true", "false"} & refuses:
        parts.append("true or false")
    if "null" not in refuses:
        parts.append("null")
    return " or ".join(parts) if parts else "a value of another kind"


_NUMBERS = ("negative", "zero", "fraction", "one", "above_one", "whole", "whole_float")


def _numbers(refuses: set[str]) -> str:
    """The numbers an argument takes, in words, from the kinds of number Keras refused."""
    taken = [kind for kind in _NUMBERS if kind not in refuses]
    if not taken:
        return ""
    if len(taken) == len(_NUMBERS) or taken == ["whole_float"]:
        return "a number" if len(taken) == len(_NUMBERS) else ""
    if "fraction" not in taken and "above_one" not in taken:
        low = "" if "negative" in taken else " >= 0" if "zero" in taken else " >= 1" if "one" in taken else " >= 2"
        return "a whole number" + low
    if "above_one" not in taken and "whole" not in taken:
        return f"a number {'from 0' if 'zero' in taken else 'above 0'} {'to 1' if 'one' in taken else 'below 1'}"
    if "negative" not in taken:
        return "a number >= 0" if "zero" in taken else "a number above 0"
    return "a number"
