"""How mlcli reads Keras classes: which classes a config may name, which keyword arguments they
accept, and the kinds of value the Keras index tries each argument with. Shared by the model builder
(with Keras loaded), the Keras index generator and the checks made from the index, so that the checks
`mlcli validate` makes without TensorFlow are the ones train makes with it. Nothing here imports
Keras: the functions take the classes and modules they inspect.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

# Names from older Keras that difflib cannot connect to their current spelling.
RENAMED = {"lr": "learning_rate", "nb_filter": "filters", "output_dim": "units", "p": "rate"}


def public_classes(module, base: type) -> dict[str, type]:
    """Public classes of a Keras module that derive from `base`, by name."""
    found = {}
    for name in dir(module):
        obj = getattr(module, name)
        if not name.startswith("_") and inspect.isclass(obj) and issubclass(obj, base):
            found[name] = obj
    return found


def closest(name: str, options: list[str]) -> str | None:
    """The option `name` is most likely a misspelling of (case-insensitive as a second try), or None."""
    if RENAMED.get(name) in options:
        return RENAMED[name]
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if not close:
        lowered = {o.lower(): o for o in options}
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)]
    return close[0] if close else None


def did_you_mean(name: str, options: list[str]) -> str:
    """"; did you mean 'X'?" for the closest option, or ""."""
    found = closest(name, options)
    return f"; did you mean {found!r}?" if found else ""


def declared_parameters(cls: type) -> list[tuple[type, inspect.Parameter]]:
    """(declaring class, parameter) for every keyword parameter of the constructors cls(...) reaches,
    following **kwargs up the class hierarchy, subclass first; a name may appear more than once."""
    found: list[tuple[type, inspect.Parameter]] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters
        found += [(klass, p) for name, p in parameters.items()
                  if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if not any(v.kind == v.VAR_KEYWORD for v in parameters.values()):
            break
    return found


def accepted_arguments(cls: type) -> list[str]:
    """Keyword arguments cls(...) accepts, following **kwargs up the class hierarchy."""
    return list(dict.fromkeys(parameter.name for _, parameter in declared_parameters(cls)))


def numeric_defaults(cls: type) -> dict[str, int | float]:
    """Keyword arguments of cls(...) with a plain number (not a bool) as a default, in the class or a base
    it passes them to, with that default."""
    found: dict[str, int | float] = {}
    for _, parameter in declared_parameters(cls):
        if parameter.name not in found and is_number(parameter.default):
            found[parameter.name] = parameter.default
    return found


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Classes a config may not name, though their module lists them: base classes, the input (mlcli adds
# it from the data), layers that run arbitrary code, the loss-scaling wrapper mixed precision adds.
REFUSED = {
    "layers": ("Layer", "InputLayer", "Lambda", "TFSMLayer"),
    "optimizers": ("Optimizer", "LossScaleOptimizer"),
    "schedules": ("LearningRateSchedule",),
    "losses": ("Loss",),
    "metrics": ("Metric",),
}


# One value of each kind a Keras argument is tried with when the index is made, and the kind of a
# config's value: a kind Keras refused for an argument is refused for it by `mlcli validate` too.
# Whole numbers and floats are kinds apart: Keras often checks isinstance(value, int) or float.
# Lists and mappings are not tried: Keras takes them in too many shapes to judge by one of each.
PROBES: dict[str, Any] = {
    "text": "mlcli-probe", "true": True, "false": False, "null": None,
    "negative": -1, "zero": 0, "one": 1, "whole": 2,
    "negative_float": -0.5, "zero_float": 0.0, "fraction": 0.5, "one_float": 1.0, "above_one": 1.5, "whole_float": 2.0,
}
INTEGERS = ("negative", "zero", "one", "whole")
FLOATS = ("negative_float", "zero_float", "fraction", "one_float", "above_one", "whole_float")
KIND_TEXT = {
    "text": "text", "true": "true", "false": "false", "null": "null",
    "negative": "a negative number", "zero": "0", "one": "1", "whole": "a whole number above 1",
    "negative_float": "a negative number", "zero_float": "0.0", "fraction": "a fraction between 0 and 1",
    "one_float": "1.0", "above_one": "a fractional number above 1", "whole_float": "a float (write 2, not 2.0)",
}


def value_kind(value: Any) -> str | None:
    """The probe kind of a config value, or None for a kind that is never tried (lists, mappings)."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return "negative" if value < 0 else "zero" if value == 0 else "one" if value == 1 else "whole"
    if isinstance(value, float):
        if value < 0 or value == 0 or value == 1:
            return "negative_float" if value < 0 else "zero_float" if value == 0 else "one_float"
        if value < 1:
            return "fraction"
        return "whole_float" if value.is_integer() else "above_one"
    return None
