"""Keras classes by name, through Keras's own registries; one constructed from config arguments.

Names resolve only through `keras.layers`, `keras.optimizers`, `keras.losses`, `keras.metrics`
(never an import path from a config), with "did you mean" for unknown names and arguments.
"""

from __future__ import annotations

from mlcli.config.keras_rules import accepted_arguments, did_you_mean, numeric_defaults
from mlcli.config.keras_rules import public_classes as registry
from mlcli.config.load import LoadedConfig
from mlcli.config.schema import LayerSpec
from mlcli.errors import ConfigError, first_line


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
    numeric = numeric_defaults(cls)
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
