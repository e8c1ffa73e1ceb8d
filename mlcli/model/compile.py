"""What model.compile takes, built from the config: the optimizer (and its schedule), the loss, the
metrics — each through Keras's own registry, with "did you mean" for unknown names."""

from __future__ import annotations

from typing import Any

from mlcli.config.keras_rules import did_you_mean
from mlcli.config.keras_rules import public_classes as registry
from mlcli.config.load import LoadedConfig
from mlcli.errors import ConfigError
from mlcli.model.layers import construct


def build_optimizer(loaded: LoadedConfig):
    import keras  # deferred: imports TensorFlow

    config = loaded.config.optimizer
    classes = registry(keras.optimizers, keras.optimizers.Optimizer)
    by_lower = {name.lower(): cls for name, cls in classes.items() if name not in ("Optimizer", "LossScaleOptimizer")}
    cls = by_lower.get(config.type.lower())
    if cls is None:
        raise ConfigError(loaded.problem(
            ("optimizer", "type"),
            f"{config.type!r} is not a keras.optimizers name" + did_you_mean(config.type.lower(), list(by_lower)),
        ))
    rate: Any = config.learning_rate
    if not isinstance(rate, float):
        schedules = registry(keras.optimizers.schedules, keras.optimizers.schedules.LearningRateSchedule)
        schedule_cls = schedules.get(rate.type)
        if schedule_cls is None or rate.type == "LearningRateSchedule":
            raise ConfigError(loaded.problem(
                ("optimizer", "learning_rate", "type"),
                f"{rate.type!r} is not a keras.optimizers.schedules class" + did_you_mean(rate.type, list(schedules)),
            ))
        rate = construct(schedule_cls, rate.arguments(), ("optimizer", "learning_rate"), loaded, "schedule")
    return construct(cls, {"learning_rate": rate, **config.arguments()}, ("optimizer",), loaded, "optimizer")


def build_loss(loaded: LoadedConfig):
    import keras  # deferred: imports TensorFlow

    loss = loaded.config.loss
    if isinstance(loss, str):
        try:
            keras.losses.get(loss)
        except (ValueError, TypeError):
            names = [n for n in dir(keras.losses) if n[:1].islower()]
            raise ConfigError(loaded.problem(
                ("loss",), f"{loss!r} is not a keras.losses name" + did_you_mean(loss, names),
            )) from None
        return loss
    classes = registry(keras.losses, keras.losses.Loss)
    cls = classes.get(loss.type)
    if cls is None or loss.type == "Loss":
        raise ConfigError(loaded.problem(
            ("loss", "type"), f"{loss.type!r} is not a keras.losses class" + did_you_mean(loss.type, list(classes)),
        ))
    return construct(cls, loss.arguments(), ("loss",), loaded, "loss")


def build_metrics(loaded: LoadedConfig) -> list:
    import keras  # deferred: imports TensorFlow

    out = []
    for index, metric in enumerate(loaded.config.metrics):
        if isinstance(metric, str):
            try:
                keras.metrics.get(metric)
            except (ValueError, TypeError):
                # Strings name functions (snake_case); Keras also accepts "accuracy" and "acc".
                names = [n for n in dir(keras.metrics) if n[:1].islower()] + ["accuracy"]
                raise ConfigError(loaded.problem(
                    ("metrics", index), f"{metric!r} is not a keras.metrics name" + did_you_mean(metric, names),
                )) from None
            out.append(metric)
            continue
        classes = registry(keras.metrics, keras.metrics.Metric)
        cls = classes.get(metric.type)
        if cls is None or metric.type == "Metric":
            raise ConfigError(loaded.problem(
                ("metrics", index, "type"),
                f"{metric.type!r} is not a keras.metrics class" + did_you_mean(metric.type, list(classes)),
            ))
        out.append(construct(cls, metric.arguments(), ("metrics", index), loaded, "metric"))
    return out
