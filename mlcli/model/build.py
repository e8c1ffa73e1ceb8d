"""Build the Sequential from layer specs through Keras's own registries; freeze/unfreeze; tables.

Names resolve only through `keras.layers`, `keras.optimizers`, `keras.losses`, `keras.metrics`
(never an import path from a config), with "did you mean" for unknown names and arguments.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import numpy as np

from mlcli.config.keras_rules import accepted_arguments
from mlcli.config.keras_rules import did_you_mean as _did_you_mean
from mlcli.config.keras_rules import numeric_defaults as _numeric_defaults
from mlcli.config.keras_rules import public_classes as _registry
from mlcli.config.load import LoadedConfig
from mlcli.config.schema import LayerSpec
from mlcli.errors import ConfigError, DataError, first_line

NORMALIZE_LAYER = "mlcli_normalize"  # the preprocessing layer mlcli adds; not counted by selectors


def _construct(cls: type, arguments: dict, where: tuple, loaded: LoadedConfig, what: str):
    """cls(**arguments), turning Keras's argument errors into a located config error."""
    accepted = accepted_arguments(cls)
    unknown = [a for a in arguments if a not in accepted]
    if unknown:
        name = unknown[0]
        raise ConfigError(loaded.problem(
            where + (name,),
            f"{what} {cls.__name__} has no argument {name!r} — expected one of: {', '.join(accepted)}"
            + _did_you_mean(name, accepted),
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
    import keras

    return _registry(keras.layers, keras.layers.Layer)


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
            f"{spec.type!r} is not a keras.layers class" + _did_you_mean(spec.type, list(classes)),
        ))
    if spec.type in ("Lambda", "TFSMLayer"):
        raise ConfigError(loaded.problem(
            where + ("type",), f"{spec.type} runs arbitrary code and cannot be described in a config",
        ))
    arguments = spec.arguments()
    for key, value in (extra or {}).items():
        arguments.setdefault(key, value)
    return _construct(cls, arguments, where, loaded, "layer")


def feature_moments(kind: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, variance) that Normalization needs: standard, or minmax as (min, (max - min)^2)."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    if kind == "standard":
        return flat.mean(axis=0), flat.var(axis=0)
    low, high = flat.min(axis=0), flat.max(axis=0)
    return low, (high - low) ** 2


def normalization_layer(kind: str, x, feature_names: list[str] | None = None, source: str = ""):
    """Statistics of the training features, inside a Keras Normalization layer (saved with the model).

    `x`: the training features, or streamed data's statistics (anything with `.moments(kind)`,
    computed chunk by chunk: mlcli.data.stream)."""
    import keras

    mean, variance = x.moments(kind) if hasattr(x, "moments") else feature_moments(kind, x)
    check_normalizable(kind, mean, variance, feature_names, source)
    # A constant feature would be divided by ~0: scale it by 1 instead, so unseen values stay finite.
    variance = np.where(variance > 1e-12, variance, 1.0)
    return keras.layers.Normalization(
        axis=-1, mean=mean.astype(np.float32), variance=variance.astype(np.float32),
        name=NORMALIZE_LAYER, dtype="float32",
    )


def check_normalizable(kind: str, mean: np.ndarray, variance: np.ndarray, feature_names: list[str] | None,
                       source: str) -> None:
    """Finite features can still be too large for float32 statistics (a 3e38 makes the variance inf),
    which would silently turn that feature into a constant inside the saved model."""
    with np.errstate(over="ignore"):
        fits = np.isfinite(np.asarray(mean, dtype=np.float32)) & np.isfinite(np.asarray(variance, dtype=np.float32))
    if fits.all():
        return
    index = int(np.flatnonzero(~fits)[0])
    names = feature_names if feature_names and len(feature_names) == len(fits) else None
    what = f"column {names[index]!r}" if names else f"feature {index}"
    statistic = "variance" if kind == "standard" else "range squared"
    raise DataError(
        f"data.train: {source}: {what}: its values are too large to normalize in float32 (the {statistic} is "
        f"{float(variance[index]):.3g}, above float32's 3.4e38)",
        hint="rescale that column (other units, or a log), or set data.normalize: none",
    )


def build_model(loaded: LoadedConfig, input_shape: tuple[int, ...], train_x,
                output_float32: bool = False, feature_names: list[str] | None = None):
    """Input -> (Normalization) -> the configured layers. The last layer computes in float32 under
    mixed precision (Keras's advice for softmax)."""
    import keras

    config = loaded.config
    layers: list[Any] = [keras.Input(shape=input_shape, name="features")]
    if config.data.normalize != "none" and train_x is not None:
        layers.append(normalization_layer(config.data.normalize, train_x, feature_names, config.data.train))
    specs = config.model.layers
    for index, spec in enumerate(specs):
        extra = {"dtype": "float32"} if output_float32 and index == len(specs) - 1 else None
        layers.append(build_layer(spec, ("model", "layers", index), loaded, extra))
    try:
        model = keras.Sequential(layers, name=config.name or "mlcli_model")
    except (ValueError, TypeError) as exc:
        raise ConfigError(loaded.problem(("model", "layers"), f"the layers do not fit together: {first_line(exc)}")) from None
    shape = tuple(model.output_shape)
    if len(shape) != 2:
        # Dense acts on the last axis only: (rows, 4, 2) features give (rows, 4, units), which no
        # loss can compare with one label per row (Keras fails mid-fit with a rank error).
        raise ConfigError(loaded.problem(
            ("model", "layers", len(specs) - 1),
            f"the model's output has shape {shape} for inputs of shape {(None, *input_shape)} — expected "
            "(None, units), one vector per row; add {type: Flatten} as the first layer",
        ))
    return model



def user_layers(model) -> list:
    """The layers as the user declared them (mlcli's preprocessing layer excluded)."""
    return [layer for layer in model.layers if layer.name != NORMALIZE_LAYER]


def build_optimizer(loaded: LoadedConfig):
    import keras

    config = loaded.config.optimizer
    classes = _registry(keras.optimizers, keras.optimizers.Optimizer)
    by_lower = {name.lower(): cls for name, cls in classes.items() if name not in ("Optimizer", "LossScaleOptimizer")}
    cls = by_lower.get(config.type.lower())
    if cls is None:
        raise ConfigError(loaded.problem(
            ("optimizer", "type"),
            f"{config.type!r} is not a keras.optimizers name" + _did_you_mean(config.type.lower(), list(by_lower)),
        ))
    rate: Any = config.learning_rate
    if not isinstance(rate, float):
        schedules = _registry(keras.optimizers.schedules, keras.optimizers.schedules.LearningRateSchedule)
        schedule_cls = schedules.get(rate.type)
        if schedule_cls is None or rate.type == "LearningRateSchedule":
            raise ConfigError(loaded.problem(
                ("optimizer", "learning_rate", "type"),
                f"{rate.type!r} is not a keras.optimizers.schedules class" + _did_you_mean(rate.type, list(schedules)),
            ))
        rate = _construct(schedule_cls, rate.arguments(), ("optimizer", "learning_rate"), loaded, "schedule")
    return _construct(cls, {"learning_rate": rate, **config.arguments()}, ("optimizer",), loaded, "optimizer")


def build_loss(loaded: LoadedConfig):
    import keras

    loss = loaded.config.loss
    if isinstance(loss, str):
        try:
            keras.losses.get(loss)
        except (ValueError, TypeError):
            names = [n for n in dir(keras.losses) if n[:1].islower()]
            raise ConfigError(loaded.problem(
                ("loss",), f"{loss!r} is not a keras.losses name" + _did_you_mean(loss, names),
            )) from None
        return loss
    classes = _registry(keras.losses, keras.losses.Loss)
    cls = classes.get(loss.type)
    if cls is None or loss.type == "Loss":
        raise ConfigError(loaded.problem(
            ("loss", "type"), f"{loss.type!r} is not a keras.losses class" + _did_you_mean(loss.type, list(classes)),
        ))
    return _construct(cls, loss.arguments(), ("loss",), loaded, "loss")


def build_metrics(loaded: LoadedConfig) -> list:
    import keras

    out = []
    for index, metric in enumerate(loaded.config.metrics):
        if isinstance(metric, str):
            try:
                keras.metrics.get(metric)
            except (ValueError, TypeError):
                # Strings name functions (snake_case); Keras also accepts "accuracy" and "acc".
                names = [n for n in dir(keras.metrics) if n[:1].islower()] + ["accuracy"]
                raise ConfigError(loaded.problem(
                    ("metrics", index), f"{metric!r} is not a keras.metrics name" + _did_you_mean(metric, names),
                )) from None
            out.append(metric)
            continue
        classes = _registry(keras.metrics, keras.metrics.Metric)
        cls = classes.get(metric.type)
        if cls is None or metric.type == "Metric":
            raise ConfigError(loaded.problem(
                ("metrics", index, "type"),
                f"{metric.type!r} is not a keras.metrics class" + _did_you_mean(metric.type, list(classes)),
            ))
        out.append(_construct(cls, metric.arguments(), ("metrics", index), loaded, "metric"))
    return out


def select_layers(layers: list, selectors: list, where: tuple, loaded: LoadedConfig) -> list[int]:
    """Indices matched by selectors: index (negative from the end), exact name, or glob."""
    chosen: list[int] = []
    for position, selector in enumerate(selectors):
        if isinstance(selector, int):
            if not -len(layers) <= selector < len(layers):
                matched = []
            else:
                matched = [selector % len(layers)]
        else:
            matched = [i for i, layer in enumerate(layers) if layer.name == selector]
            if not matched and any(ch in selector for ch in "*?["):
                matched = [i for i, layer in enumerate(layers) if fnmatch.fnmatchcase(layer.name, selector)]
        if not matched:
            listing = "; ".join(f"{i}: {layer.name} ({type(layer).__name__})" for i, layer in enumerate(layers))
            raise ConfigError(loaded.problem(
                where + (position,),
                f"selector {selector!r} matches no layer — the layers are: {listing}",
            ))
        chosen.extend(i for i in matched if i not in chosen)
    return chosen


def layer_table(model) -> list[dict]:
    """Every declared layer: index, name, type, parameters, trainable or frozen."""
    rows = []
    for index, layer in enumerate(user_layers(model)):
        params = int(sum(np.prod(w.shape) for w in layer.weights))
        rows.append({
            "index": index, "name": layer.name, "type": type(layer).__name__,
            "params": params, "trainable": bool(layer.trainable),
        })
    return rows


def parameter_counts(model) -> dict[str, int]:
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    non_trainable = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    return {"trainable": trainable, "non_trainable": non_trainable, "total": trainable + non_trainable}
