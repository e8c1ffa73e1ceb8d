"""The Keras half of `mlcli schema`: every layer, optimizer, schedule, loss and metric of the Keras
index, with its arguments, their defaults and the values Keras takes, as JSON Schema. An editor with
yaml-language-server completes `type: Conv2D`, then offers filters, kernel_size, strides, ... and
flags `kernal_size`, exactly as `mlcli validate` would.

Each Keras object definition (LayerSpec, ...) gets `type` as an enum of the names mlcli resolves and
one `if type is X then X's arguments` branch per class. Argument value schemas repeat a lot (every
layer's dtype, name, trainable, ...), so each distinct one is written once under $defs and referred to.
"""

from __future__ import annotations

import json
from typing import Any

from mlcli.config.keras_checks import expected, number_shape, refused_kinds
from mlcli.config.keras_index import KerasIndex
from mlcli.config.keras_probes import REGISTRIES
from mlcli.config.keras_rules import REFUSED

_REF = "#/$defs/"
_KINDS = {"LayerSpec": "layers", "ScheduleSpec": "schedules", "OptimizerConfig": "optimizers",
          "LossSpec": "losses", "MetricSpec": "metrics"}


def add_keras(schema: dict, index: KerasIndex) -> dict:
    """`schema` (the config's JSON Schema) with the index's classes and names in it."""
    defs = schema["$defs"]
    values: dict[str, str] = {}  # a value schema as JSON -> the name of its definition
    for definition, kind in _KINDS.items():
        names = [n for n in index.class_names(kind) if n not in REFUSED.get(kind, ())]
        node = defs[definition]
        type_property = node["properties"]["type"]
        if kind == "optimizers":  # resolved case-insensitively (adam, Adam); `type` may be left out
            type_property["anyOf"] = [{"enum": sorted(n.lower() for n in names) + names},
                                      {"pattern": "^(" + "|".join(_any_case(n) for n in names) + ")$"}]
            type_property.pop("type", None)
        else:
            type_property["enum"] = names
        # Aliases (Conv2D and Convolution2D are one class) share one branch: the schema stays small.
        same: dict[str, tuple[dict, list[str]]] = {}
        for name in names:
            entry = index.entry(kind, name) or {"doc": "", "arguments": []}
            then = _arguments(entry, list(node["properties"]), defs, values)
            same.setdefault(json.dumps(then, sort_keys=True), (then, []))[1].append(name)
        branches = [{"if": _condition(kind, group), "then": then} for then, group in same.values()]
        node["allOf"] = branches
    for registry in REGISTRIES:
        defs[_names(registry)] = {"enum": index.names(registry), "description": f"A keras.{registry} name."}
    defs["KerasLossName"] = {"enum": index.names("losses"), "description": "A keras.losses name."}
    defs["KerasMetricName"] = {"enum": index.names("metrics"), "description": "A keras.metrics name."}
    _replace_strings(schema["properties"]["loss"], "KerasLossName")
    _replace_strings(schema["properties"]["metrics"]["items"], "KerasMetricName")
    return schema


def _condition(kind: str, names: list[str]) -> dict:
    """`type` names one of `names` (in any case for an optimizer, whose type may also be left out: adam)."""
    if kind == "optimizers":
        matches = {"pattern": "^(" + "|".join(_any_case(n) for n in names) + ")$"}
        return {"properties": {"type": matches}} if "Adam" in names else {"properties": {"type": matches},
                                                                         "required": ["type"]}
    return {"properties": {"type": {"const": names[0]} if len(names) == 1 else {"enum": names}}, "required": ["type"]}


def _any_case(name: str) -> str:
    """A regular expression (ECMA 262 has no case-insensitive flag inside a pattern) for any casing."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in name)


def _replace_strings(node: dict, definition: str) -> None:
    node["anyOf"] = [{"$ref": _REF + definition} if option == {"type": "string"} else option
                     for option in node["anyOf"]]


def _arguments(entry: dict, declared: list[str], defs: dict, values: dict[str, str]) -> dict:
    """One class's arguments: the only keys its mapping may hold, besides those the schema declares."""
    properties: dict[str, Any] = {key: {} for key in declared}
    required = []
    for argument in entry["arguments"]:
        name = argument["name"]
        if argument.get("set_by_class") or name in declared:
            continue
        properties[name] = _property(argument, defs, values)
        if argument.get("required"):
            required.append(name)
    then: dict[str, Any] = {"description": entry["doc"], "properties": properties, "additionalProperties": False}
    if required:
        then["required"] = required
    return then


def _property(argument: dict, defs: dict, values: dict[str, str]) -> dict:
    """An argument's schema: its values (written once under $defs, as many arguments take the same:
    dtype, name, ...) and its default (which completion inserts; a null default says nothing)."""
    schema = _value_schema(argument)
    found: dict[str, Any] = {}
    if schema:
        text = json.dumps(schema, sort_keys=True)
        if text not in values:
            values[text] = f"kerasValue{len(values) + 1}"
            defs[values[text]] = {"description": "Takes " + expected(argument) + ".", **schema}
        found["$ref"] = _REF + values[text]
    if argument.get("default") is not None:
        found["default"] = argument["default"]
    return found


def _value_schema(argument: dict) -> dict:
    """The values `mlcli validate` lets through for an argument: every JSON type but those whose kinds
    Keras refused (lists and mappings are never tried, so always allowed)."""
    refuses = refused_kinds(argument)
    if not refuses:
        return {}
    options: list[dict] = [{"type": ["array", "object"]}]
    rule = argument.get("text")
    if "text" not in refuses:
        options.append({"type": "string"})
    elif isinstance(rule, str):
        options.append({"$ref": _REF + _names(rule)})
    elif rule:
        options.append({"enum": rule} if not argument.get("ignore_case") else
                       {"pattern": "^(" + "|".join(_any_case(w) for w in rule) + ")$"})
    booleans = [value for kind, value in (("true", True), ("false", False)) if kind not in refuses]
    if booleans:
        options.append({"type": "boolean"} if len(booleans) == 2 else {"const": booleans[0]})
    if "null" not in refuses:
        options.append({"type": "null"})
    number = _number_schema(refuses)
    if number:
        options.append(number)
    return {"anyOf": options} if len(options) > 1 else options[0]


def _names(registry: str) -> str:
    return "KerasNames" + registry.capitalize()


def _number_schema(refuses: set[str]) -> dict | None:
    """The numbers an argument takes (JSON Schema cannot tell 2 from 2.0: a float-only one is a number)."""
    shape = number_shape(refuses)
    if shape is None:
        return None
    schema: dict[str, Any] = {"type": "integer" if shape["type"] == "int" else "number"}
    if "low" in shape:
        schema["exclusiveMinimum" if shape["low_open"] else "minimum"] = shape["low"]
    if "high" in shape:
        schema["exclusiveMaximum" if shape["high_open"] else "maximum"] = shape["high"]
    return schema
