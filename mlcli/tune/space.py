"""The search space of a sweep (tune.space), checked before the first trial, and a trial's config built
from its parameters (docs/contract.md §8). No TensorFlow, no Optuna.

Every space key goes through the same `--set` machinery as the command line, and every value a
distribution can produce (its bounds, each choice) is laid over the config and validated as a whole
config would be: an unknown key gets the schema's "did you mean", a value out of the key's range or a
combination Keras refuses is named at the space entry's file and line.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from mlcli.config import check_config, computed_metrics, to_dict
from mlcli.config.load import LoadedConfig, locate, validate
from mlcli.config.merge import apply_set
from mlcli.config.schema import SpaceSpec, TuneConfig
from mlcli.errors import ConfigError, ConfigProblem

# Metric names that are better when smaller: direction auto minimizes these (docs/contract.md §8).
_SMALLER_IS_BETTER = ("loss", "error", "mse", "mae", "mape", "msle", "crossentropy", "hinge", "poisson",
                      "divergence")
GRID_KINDS = ("choice", "int")


def direction(tune: TuneConfig) -> str:
    """maximize | minimize: the configured one, or inferred from the metric's name."""
    if tune.direction != "auto":
        return tune.direction
    name = tune.metric.lower()
    return "minimize" if any(word in name for word in _SMALLER_IS_BETTER) else "maximize"


def grid_values(spec: SpaceSpec) -> list:
    """Every value of a choice or int entry (the grid sampler's axis)."""
    if spec.choice is not None:
        return list(spec.choice)
    low, high = spec.int
    return list(range(low, high + 1, spec.step or 1))


def grid_size(tune: TuneConfig) -> int:
    return math.prod(len(grid_values(spec)) for spec in tune.space.values())


def assignment(key: str, value: Any) -> str:
    """KEY=VALUE as --set takes it (JSON is YAML: strings stay strings, 1e-05 stays a float)."""
    return f"{key}={json.dumps(value)}"


def trial_config(loaded: LoadedConfig, params: dict[str, Any], name: str | None = None) -> LoadedConfig:
    """The sweep's config with a trial's parameters set, without its tune: section (a trial is a plain
    run, and its config.yaml runs as `mlcli train` takes it). Raises ConfigError for a bad combination."""
    data = _base_data(loaded)
    positions = dict(loaded.positions)
    for key, value in params.items():
        apply_set(data, positions, assignment(key, value))
    if name is not None:
        data["name"] = name
    trial = LoadedConfig(validate(data, positions), positions, loaded.source)
    check_config(trial)
    return trial


def _base_data(loaded: LoadedConfig) -> dict:
    data = copy.deepcopy(to_dict(loaded.config))
    data.pop("tune", None)
    return data


def tune_problems(loaded: LoadedConfig) -> list[ConfigProblem]:
    """Everything wrong with the tune: section, found before any trial: the metric, the sampler against
    the space, and every space key and value tried on the config."""
    tune = loaded.config.tune
    if tune is None:
        return [ConfigProblem("tune", "mlcli tune needs a tune: section — e.g. tune: {metric: val_accuracy, "
                              "trials: 20, space: {optimizer.learning_rate: {loguniform: [1.0e-4, 1.0e-1]}}}",
                              str(loaded.source) if loaded.source else None)]
    problems: list[ConfigProblem] = []
    config = loaded.config
    reported = [name for name in computed_metrics(config) if not name.startswith("test_")]
    if tune.metric not in reported:
        why = ""
        if tune.metric.startswith("test_"):
            why = "; test_ metrics come only at a run's end, and trials are judged (and pruned) epoch by epoch"
        elif tune.metric.startswith("val_") and config.data.validation is None:
            why = "; val_ metrics need data.validation"
        problems.append(loaded.problem(("tune", "metric"), f"{tune.metric!r} is not reported by the runs during "
                                       f"training — expected one of {', '.join(reported)}{why}"))
    if tune.sampler == "grid":
        for key, spec in tune.space.items():
            if spec.kind() not in GRID_KINDS:
                problems.append(loaded.problem(("tune", "space", key), f"{spec.kind()} has no grid — the grid "
                                               "sampler takes choice and int entries; use sampler: tpe or random, "
                                               "or give a choice: [...]"))
    problems += _space_problems(loaded, tune)
    return problems


def _space_problems(loaded: LoadedConfig, tune: TuneConfig) -> list[ConfigProblem]:
    base = _base_data(loaded)
    before = set()
    try:
        check_config(LoadedConfig(validate(copy.deepcopy(base), dict(loaded.positions)), loaded.positions,
                                  loaded.source))
    except ConfigError as exc:  # the config's own problems are reported by check_config, not per value
        before = {(p.path, p.message) for p in exc.problems}
    problems: list[ConfigProblem] = []
    for key, spec in tune.space.items():
        where = locate(("tune", "space", key), "", loaded.positions, str(loaded.source) if loaded.source else None)
        values = spec.values()
        found: dict[tuple[str, str], list] = {}  # (key, message) -> the values that cause it
        for value in values:
            for problem in _probe(loaded, base, key, value):
                if (problem.path, problem.message) not in before:
                    found.setdefault((problem.path, problem.message), []).append(value)
        for (path, message), causes in found.items():
            text = message if path == key else f"{path}: {message}"
            if len(causes) < len(values) and not any(repr(v) in message or str(v) in message for v in causes):
                text = f"with {', '.join(repr(v) for v in causes)}: {text}"  # which of the values it is
            problems.append(ConfigProblem(f"tune.space.{key}", text, where.source, where.line))
    return problems


def _probe(loaded: LoadedConfig, base: dict, key: str, value: Any) -> list[ConfigProblem]:
    """The problems of the config with KEY set to VALUE (none when it is a valid config)."""
    data = copy.deepcopy(base)
    positions = dict(loaded.positions)
    try:
        apply_set(data, positions, assignment(key, value))
        check_config(LoadedConfig(validate(data, positions), positions, loaded.source))
    except ConfigError as exc:
        return exc.problems
    return []


def check_tune(loaded: LoadedConfig, gates: list[str] = ()) -> None:
    """check_config and tune_problems together: every problem at once (exit 2)."""
    problems: list[ConfigProblem] = []
    try:
        check_config(loaded, gates=gates)
    except ConfigError as exc:
        problems += exc.problems
    problems += tune_problems(loaded)
    if problems:
        raise ConfigError(problems)
