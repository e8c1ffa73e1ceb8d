"""Keras classes by name, through Keras's own registries; one constructed from config arguments.

Names resolve only through `keras.layers`, `keras.optimizers`, `keras.losses`, `keras.metrics`
(never an import path from a config), with "did you mean" for unknown names and arguments.
"""

from __future__ import annotations

import difflib
import inspect

from mlcli.config.load import LoadedConfig
from mlcli.config.schema import LayerSpec
from mlcli.errors import ConfigError, first_line


def registry(module, base: type) -> dict[str, type]:
    """Public classes of a Keras module that derive from `base`, by name."""
    found = {}
    for name in dir(module):
        obj = getattr(module, name)
        if not name.startswith("_") and inspect.isclass(obj) and issubclass(obj, base):
            found[name] = obj
    return found


# Names from older Keras that difflib cannot connect to their current spelling.
_RENAMED = {"lr": "learning_rate", "nb_filter": "filters", "output_dim": "units", "p": "rate"}


def did_you_mean(name: str, options: list[str]) -> str:
    if _RENAMED.get(name) in options:
        return f"; did you mean {_RENAMED[name]!r}?"
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if not close:
        lowered = {o.lower(): o for o in options}
        close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
        close = [lowered[c] for c in close]
    return f"; did you mean {close[0]!r}?" if close else ""


def accepted_arguments(cls: type) -> list[str]:
    """Keyword arguments cls(...) accepts, following **kwargs up the class hierarchy."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters
        names.extend(p for p, v in parameters.items()
                     if p != "self" and v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL) and p not in names)
        if not any(v.kind == v.VAR_KEYWORD for v in parameters.values()):
            break
    return names


def _numeric_defaults(cls: type) -> dict[str, int | float]:
    """Keyword arguments of cls(...) whose default is a plain number (not a bool), with that default."""
    found: dict[str, int | float] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters
        for name, parameter in parameters.items():
            default = parameter.default
            if name not in found and isinstance(default, (int, float)) and not isinstance(default, bool):
                found[name] = default
        if not any(v.kind == v.VAR_KEYWORD for v in parameters.values()):
            break
    return found


def construct(cls: type, arguments: dict, where: tuple, loaded: LoadedConfig, what: str):
    """cls(**arguments), turning Keras's argument errors into a located config error."""
    accepted = accepted_arguments(cls)
    unknown = [a for a in arguments if a not in accepted]
    if unknown:
        name = unknown[0]
        raise ConfigError(loaded.problem(
            where + (name,),
            f"{what} {cls.__name__} has no argument {name!r} — expected one of: {', '.join(accepted)}"
            + did_you_mean(name, accepted),
        ))
    numeric = _numeric_defaults(cls)
    for name, value in arguments.items():
        # Keras stores e.g. Adam(beta_1="high") or a loss's label_smoothing="lots" as given and fails
        # only inside fit, with a bare TypeError: check what the default says is a number up front.
        if name in numeric and isinstance(value, (str, bool)):
            raise ConfigError(loaded.problem(
                where + (name,),
                f"{what} {cls.__name__}: {name} got {value!r} — expected a number (default {numeric[name]!r})",
            ))
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as exc:
        raise ConfigError(loaded.problem(where, f"{what} {cls.__name__}: {first_line(exc)}")) from None


def layer_classes() -> dict[str, type]:
    import keras  # deferred: imports TensorFlow

    return registry(keras.layers, keras.layers.Layer)


def build_layer(spec: LayerSpec, where: tuple, loaded: LoadedConfig, extra: dict | None = None):
    classes = layer_classes()
    cls = classes.get(spec.type)
    if spec.type in ("InputLayer", "Input"):
        raise ConfigError(loaded.problem(
            where + ("type",), f"{spec.type} is not needed: mlcli adds the input from the data's shape — remove this layer",
        ))
    if cls is None or spec.type == "Layer":
        raise ConfigError(loaded.problem(
            where + ("type",),
            f"{spec.type!r} is not a keras.layers class" + did_you_mean(spec.type, list(classes)),
        ))
    if spec.type in ("Lambda", "TFSMLayer"):
        raise ConfigError(loaded.problem(
            where + ("type",), f"{spec.type} runs arbitrary code and cannot be described in a config",
        ))
    arguments = spec.arguments()
    for key, value in (extra or {}).items():
        arguments.setdefault(key, value)
    return construct(cls, arguments, where, loaded, "layer")
