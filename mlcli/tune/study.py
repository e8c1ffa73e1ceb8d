"""The Optuna side of a sweep: storage, study, sampler, pruner, and a trial's parameters suggested from
tune.space. Optuna is imported inside these functions (`mlcli --help` and `validate` never load it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlcli.config.schema import SpaceSpec, TuneConfig
from mlcli.errors import ConfigError, ConfigProblem, StorageError
from mlcli.tune.space import direction, grid_values

STUDY_DB = "study.db"
SQLITE_TIMEOUT = 60  # seconds a worker waits for another one's SQLite write lock (several --jobs share it)


def storage_url(tune: TuneConfig, sweep_dir: Path) -> str:
    return tune.storage or f"sqlite:///{(sweep_dir / STUDY_DB).resolve()}"


def open_study(tune: TuneConfig, sweep_dir: Path, name: str, epochs: int):
    """The sweep's study: created, or loaded when the storage already holds one by this name."""
    import optuna  # deferred: only a sweep needs Optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(tune, sweep_dir)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT}}
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        return optuna.create_study(storage=storage, study_name=name, direction=direction(tune),
                                   pruner=make_pruner(tune, epochs), load_if_exists=True)
    except ValueError as exc:  # a study by this name with another direction
        raise ConfigError(ConfigProblem("tune.direction", f"the storage already holds a study {name!r} that "
                                        f"differs: {exc}")) from None
    except Exception as exc:  # noqa: BLE001 — SQLAlchemy's errors for a URL it cannot open are many
        if type(exc).__module__.startswith(("sqlalchemy", "optuna")):
            raise StorageError(f"tune.storage {url}: cannot open the study: {str(exc).splitlines()[0]}",
                               hint="give a storage URL Optuna can open, e.g. sqlite:///path/study.db") from None
        raise


def make_sampler(tune: TuneConfig, seed: int, base_seed: int):
    """A fresh sampler seeded with `seed`. The sweep makes one before each new trial, seeded with the
    sweep's seed plus the number of trials so far: the n-th trial's parameters depend only on the seed
    and the trials before it — the same in a fresh sweep, a resumed one, or a rerun. `base_seed`: the
    sweep's seed itself."""
    import optuna  # deferred: only a sweep needs Optuna

    if tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if tune.sampler == "grid":
        # The grid's order is shuffled once by the seed, and trial n takes the n-th point: the sweep's own
        # seed (not seed + n), so that every fresh sampler shuffles alike and no point is visited twice.
        return optuna.samplers.GridSampler({k: grid_values(s) for k, s in tune.space.items()}, seed=base_seed)
    # A few random trials first, then TPE: a quarter of the sweep, between 2 and Optuna's 10.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, tune.trials // 4)))


def make_pruner(tune: TuneConfig, epochs: int):
    import optuna  # deferred: only a sweep needs Optuna

    if tune.pruner == "none":
        return optuna.pruners.NopPruner()
    if tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    # Epochs count from 1: compare from the second epoch on (a first epoch says little), once a few trials
    # have finished.
    return optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, tune.trials // 4)), n_warmup_steps=2)


def suggest(trial, space: dict[str, SpaceSpec]) -> dict[str, Any]:
    """The trial's parameters, one per space key (a trial that has them already gets them back)."""
    params: dict[str, Any] = {}
    for key, spec in space.items():
        kind = spec.kind()
        if kind == "loguniform":
            params[key] = trial.suggest_float(key, *spec.loguniform, log=True)
        elif kind == "uniform":
            params[key] = trial.suggest_float(key, *spec.uniform)
        elif kind == "int":
            params[key] = trial.suggest_int(key, *spec.int, step=spec.step or 1)
        else:
            params[key] = trial.suggest_categorical(key, spec.choice)
    return params
