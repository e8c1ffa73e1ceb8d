"""One trial of a sweep: a normal run directory (DIR/trials/NNNN) trained by the training stage itself,
its metric reported to the study epoch by epoch (the pruner's input), and its outcome told to the study:
complete with its value, pruned, or failed with the reason (the sweep goes on)."""

from __future__ import annotations

import contextvars
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcli.config.load import LoadedConfig
from mlcli.errors import ConfigError, Diverged, Interrupted, MlcliError, first_line
from mlcli.run import files
from mlcli.run.history import read_history
from mlcli.run.manifest import read_manifest
from mlcli.runtime import import_tensorflow
from mlcli.settings import Settings, active_settings, use_settings
from mlcli.tune.space import trial_config

TRIALS = "trials"


def trial_dir(sweep_dir: Path, number: int) -> Path:
    return sweep_dir / TRIALS / f"{number:04d}"


@dataclass
class Outcome:
    number: int
    state: str  # complete | pruned | fail
    value: float | None
    params: dict[str, Any]
    run_dir: Path
    seconds: float  # the trial's wall time in this process
    train_seconds: float = 0.0  # the epochs' own time, from the run's history.csv
    reason: str | None = None  # why it failed or was pruned
    exit_code: int | None = None  # a failure's exit code (what a sweep whose every trial failed exits with)
    metrics: dict = field(default_factory=dict)


def pruning_reporter(trial, metric: str):
    """A Keras callback reporting `metric` at each epoch end to the trial, and stopping the run when the
    pruner says so (the run then ends as a shorter, completed run; the study records the trial pruned)."""
    import_tensorflow()  # quietly, before Keras imports it with its start-up noise
    import keras  # deferred: a trial's callback is a Keras object

    class PruningReporter(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.pruned_at: int | None = None
            self.last: float | None = None

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(metric)
            if value is None or not math.isfinite(float(value)):
                return
            self.last = float(value)
            trial.report(self.last, epoch + 1)
            if trial.should_prune():
                self.pruned_at = epoch + 1
                self.model.stop_training = True

    return PruningReporter()


def run_trial(sweep: LoadedConfig, study, trial, params: dict[str, Any], sweep_dir: Path) -> Outcome:
    """Train the trial's run (or continue it: a trial a killed process left running resumes from its
    run directory), tell the study how it ended, and return that outcome."""
    import optuna  # deferred: only a sweep needs Optuna

    tune = sweep.config.tune
    number = trial.number
    run_dir = trial_dir(sweep_dir, number)
    started = time.perf_counter()
    outcome = Outcome(number, "fail", None, params, run_dir, 0.0)
    reporter = None
    try:
        loaded = trial_config(sweep, params, name=f"{sweep.config.name or 'sweep'}-{number:04d}")
        reporter = pruning_reporter(trial, tune.metric)
        result = _train(loaded, run_dir, reporter)
        outcome.metrics = dict(result.metrics)
        value = result.metrics.get(tune.metric)
        if reporter.pruned_at is not None:
            outcome.state, outcome.value = "pruned", reporter.last
            outcome.reason = f"pruned after epoch {reporter.pruned_at}"
        elif value is None or not math.isfinite(float(value)):
            outcome.reason = f"the run reported no finite {tune.metric}"
            outcome.exit_code = 1
        else:
            outcome.state, outcome.value = "complete", float(value)
    except Interrupted:
        raise  # the trial stays running in the study: the next `mlcli tune` resumes its run directory
    except Diverged as exc:
        outcome.reason, outcome.exit_code = f"diverged: {first_line(exc)}", exc.exit_code
    except ConfigError as exc:  # a combination of parameters the config refuses
        outcome.reason = f"config error: {'; '.join(p.render() for p in exc.problems)}"
        outcome.exit_code = exc.exit_code
    except MlcliError as exc:
        outcome.reason, outcome.exit_code = f"{exc.kind}: {first_line(exc)}", exc.exit_code
    except Exception as exc:  # noqa: BLE001 — one trial's bug must not end the sweep: recorded, sweep goes on
        outcome.reason, outcome.exit_code = f"internal error: {type(exc).__name__}: {first_line(exc)}", 1
    finally:
        _clear_keras()
    outcome.seconds = time.perf_counter() - started
    outcome.train_seconds = _train_seconds(run_dir)
    for key, value in (("reason", outcome.reason), ("seconds", round(outcome.seconds, 3)),
                       ("train_seconds", round(outcome.train_seconds, 3)), ("exit_code", outcome.exit_code)):
        if value is not None:
            trial.set_user_attr(key, value)
    state = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
             "fail": optuna.trial.TrialState.FAIL}[outcome.state]
    # The sampler is made afresh before each new trial (mlcli.tune.sweep); the one told here must not act on
    # the outcome: GridSampler.after_trial calls study.stop() on the last point, which raises outside optimize().
    study.sampler = optuna.samplers.RandomSampler(seed=0)
    study.tell(trial, outcome.value if outcome.state == "complete" else None, state=state)
    return outcome


def _train(loaded: LoadedConfig, run_dir: Path, reporter):
    """The training stage on the trial's run directory: started, continued, or (finished) reported."""
    # deferred: the training session imports numpy and (when run) TensorFlow
    from mlcli.training import session

    resume = files.is_run(run_dir)
    if resume and read_manifest(run_dir).get("status") == "completed" and (run_dir / files.MODEL).is_file():
        return session.finished_result(run_dir)
    plan = session.RunPlan("train", loaded, run_dir, resume=resume)
    settings = active_settings()

    def train():
        # A trial's own epoch lines would drown the sweep's one line per trial: trials train quietly.
        use_settings(Settings(quiet=True, json=False, verbose=settings.verbose, unsafe=settings.unsafe))
        return session.execute(plan, command=["mlcli", "tune", "(trial)", str(run_dir)], callbacks=[reporter])

    return contextvars.copy_context().run(train)


def _train_seconds(run_dir: Path) -> float:
    """The epochs' own time, from history.csv: what a trial spends beyond it is the sweep's overhead."""
    try:
        return float(sum(float(row.get("seconds") or 0) for row in read_history(run_dir / files.HISTORY)))
    except (OSError, ValueError):
        return 0.0


def _clear_keras() -> None:
    """Each trial builds a new model: free the previous one's graph state in this process."""
    keras = sys.modules.get("keras")
    if keras is not None:
        keras.backend.clear_session(free_memory=False)  # Python's own GC frees the rest; a full gc.collect costs ~1 s a trial
