"""A sweep from start to end (docs/contract.md §8): the study opened (or continued), trials run until the
study holds `trials` of them — in this process, or in J worker processes sharing the storage — then the
leaderboard, best.yaml and plots written from the study.

Resume. Every trial records which process runs it (host:pid). A trial that is still `running` in the
study but whose process is gone (SIGKILL, a crash, a reboot) is adopted by the next `mlcli tune` on
this host: the same Optuna trial (same number, same parameters) continues its run directory with the
training stage's exact resume, and is told to the study as any other. So a killed sweep loses at most
the steps since its last saved state, and `trials` counts every trial once.

Reproducibility. Before each new trial the sampler is made afresh, seeded with tune.seed (default: the
config's seed) plus the number of trials so far: a trial's parameters depend only on the seed and the
trials before it, whether the sweep ran straight through or was resumed. (With --jobs J > 1 trials
start while others run, so the sequence depends on timing.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mlcli import console
from mlcli.config import differences, to_dict
from mlcli.config.load import LoadedConfig
from mlcli.errors import ConfigError, ConfigProblem, Interrupted, MlcliError, UsageError
from mlcli.run import files
from mlcli.tune import study as studies
from mlcli.tune import sweep_dir as outputs
from mlcli.tune.space import direction, grid_size
from mlcli.tune.trial import Outcome, run_trial

ASK_LOCK = ".tune.lock"  # one process at a time picks the next trial: the study never exceeds `trials`


class SweepFailed(MlcliError):
    """Every trial of the sweep failed: exits with the first failure's own code (6 diverged, 2 config, 3 data,
    1 a bug), so a sweep of one kind of failure reads like that failure."""

    kind = "sweep failed"

    def __init__(self, message: str, exit_code: int, hint: str | None = None):
        super().__init__(message, hint)
        self.exit_code = exit_code


@dataclass
class SweepResult:
    sweep_dir: Path
    status: str  # completed | failed
    metric: str
    direction: str
    rows: list[dict]
    space: list[str]
    best: dict | None = None
    notes: list[str] = field(default_factory=list)

    def document(self) -> dict:
        """The --json document of docs/contract.md §8."""
        return {"sweep_dir": str(self.sweep_dir), "status": self.status, "metric": self.metric,
                "direction": self.direction, "trials": self.rows, "best": self.best}


def sweep_identity(loaded: LoadedConfig) -> dict:
    """What must not change when a sweep continues: the whole resolved config but tune.trials (raising
    it extends the sweep) and tune.storage (where it lives)."""
    data = to_dict(loaded.config)
    tune = dict(data.get("tune") or {})
    tune.pop("trials", None)
    tune.pop("storage", None)
    data["tune"] = tune
    data.pop("name", None)
    return data


def open_sweep(loaded: LoadedConfig, sweep_dir: Path):
    """The study, checked to be this config's sweep when it already holds trials."""
    config = loaded.config
    files.check_writable_folder(sweep_dir, f"sweep directory {sweep_dir}")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    study = studies.open_study(config.tune, sweep_dir, config.name or "sweep", config.training.epochs)
    identity = sweep_identity(loaded)
    saved = study.user_attrs.get("config")
    if saved is None:
        study.set_user_attr("config", identity)
    elif saved != identity:
        lines = differences(saved, identity)
        raise ConfigError(
            [ConfigProblem(line.split(":", 1)[0], line.split(":", 1)[1].strip(), str(loaded.source)) for line in lines],
            hint=f"{sweep_dir} holds a sweep of another config (only tune.trials may change): give another --output, "
                 "or restore the config it was started with")
    return study


def total_trials(loaded: LoadedConfig) -> int:
    tune = loaded.config.tune
    return min(tune.trials, grid_size(tune)) if tune.sampler == "grid" else tune.trials


@contextlib.contextmanager
def _ask_lock(sweep_dir: Path):
    with open(sweep_dir / ASK_LOCK, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _gone(worker: str | None) -> bool:
    """Whether the process that ran a trial is gone (only a process on this host can be asked)."""
    if worker is None:
        return True  # asked but never claimed: its asker died under the lock's protection
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _next_trial(loaded: LoadedConfig, study, total: int):
    """(trial, params, adopted): an orphaned trial to continue, else a new one; None when the study is full."""
    import optuna  # deferred: only a sweep needs Optuna

    tune = loaded.config.tune
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if _gone(frozen.user_attrs.get("worker")):
            trial = optuna.trial.Trial(study, frozen._trial_id)
            trial.set_user_attr("worker", _me())
            trial.set_user_attr("resumed", int(frozen.user_attrs.get("resumed", 0)) + 1)
            return trial, studies.suggest(trial, tune.space), True
    count = len(study.get_trials(deepcopy=False))
    if count >= total:
        return None
    seed = tune.seed if tune.seed is not None else loaded.config.seed
    study.sampler = studies.make_sampler(tune, seed + count, seed)
    trial = study.ask()
    trial.set_user_attr("worker", _me())
    return trial, studies.suggest(trial, tune.space), False


def work(loaded: LoadedConfig, sweep_dir: Path, report: Callable[[Outcome, bool], None]) -> None:
    """Run trials until the study holds `trials` of them (every process of a sweep runs this loop)."""
    study = open_sweep(loaded, sweep_dir)
    total = total_trials(loaded)
    while True:
        with _ask_lock(sweep_dir):
            picked = _next_trial(loaded, study, total)
        if picked is None:
            return
        trial, params, adopted = picked
        report(run_trial(loaded, study, trial, params, sweep_dir), adopted)


def run_sweep(loaded: LoadedConfig, sweep_dir: Path, jobs: int, worker_command: list[str],
              report: Callable[[Outcome, bool], None]) -> SweepResult:
    """The whole sweep: trials in this process (jobs 1) or in `jobs` worker processes, then its files."""
    study = open_sweep(loaded, sweep_dir)  # before any worker: a config that differs is refused at once
    if jobs == 1:
        work(loaded, sweep_dir, report)
    else:
        _run_workers(worker_command, jobs)
    return finish_sweep(loaded, sweep_dir, study)


def _run_workers(command: list[str], jobs: int) -> None:
    """J `mlcli tune --worker` processes on the same study; each prints its own trials' lines on stderr.
    Ctrl-C reaches them too (one process group): each leaves its trial to be resumed."""
    # stdout is the coordinator's (its --json document): a worker writes only to stderr.
    workers = [subprocess.Popen(command, stdout=subprocess.DEVNULL) for _ in range(jobs)]
    codes = []
    try:
        codes = [w.wait() for w in workers]
    except KeyboardInterrupt:
        for w in workers:
            w.wait()
        raise Interrupted("the sweep's workers were interrupted; each trial they ran is kept and resumes",
                          hint="continue with the same command") from None
    if any(code == 130 for code in codes):
        raise Interrupted("a worker was interrupted; its trial resumes", hint="continue with the same command")
    bad = [code for code in codes if code not in (0, 130)]
    if bad:
        raise UsageError(f"{len(bad)} of {jobs} worker process(es) ended with exit code {bad[0]} (see above)",
                         hint="the trials that finished are kept: rerun the same command to continue")


def finish_sweep(loaded: LoadedConfig, sweep_dir: Path, study) -> SweepResult:
    tune = loaded.config.tune
    maximize = direction(tune) == "maximize"
    rows = outputs.trial_rows(study, sweep_dir)
    space = list(tune.space)
    outputs.write_leaderboard(sweep_dir, rows, space, tune.metric)
    complete = [r for r in rows if r["state"] == "complete"]
    best_row = None
    if complete:
        best_row = (max if maximize else min)(complete, key=lambda r: r["value"])
    outputs.write_best(sweep_dir, best_row["number"] if best_row else None)
    notes = outputs.write_plots(study, sweep_dir, rows, tune.metric, maximize)
    best = None
    if best_row is not None:
        best = {"trial": best_row["number"], "value": best_row["value"], "params": best_row["params"],
                "run_dir": best_row["run_dir"]}
    status = "completed"
    failed = [r for r in rows if r["state"] == "fail"]
    if rows and len(failed) == len(rows):
        status = "failed"
    return SweepResult(sweep_dir, status, tune.metric, direction(tune), rows, space, best, notes)


def all_failed_error(result: SweepResult) -> SweepFailed:
    reasons: dict[str, int] = {}
    for row in result.rows:
        reasons[row["reason"] or "unknown"] = reasons.get(row["reason"] or "unknown", 0) + 1
    summary = "; ".join(f"{count} × {reason}" for reason, count in reasons.items())
    code = next((r["exit_code"] for r in result.rows if r["exit_code"]), 1)
    return SweepFailed(f"every one of the {len(result.rows)} trial(s) failed: {summary}", int(code),
                       hint=f"see {result.sweep_dir / outputs.LEADERBOARD} and each trial's run.json; fix the "
                            "config or the space, then start a new sweep (another --output)")


def python_worker_command(args: list[str]) -> list[str]:
    """`mlcli tune ... --worker` as this Python runs it (the same installation as the coordinator)."""
    return [sys.executable, "-m", "mlcli", "tune", *args, "--worker"]


def echo(outcome: Outcome, adopted: bool, total: int, metric: str) -> None:
    """One plain line per finished trial on stderr."""
    value = "" if outcome.value is None else f" {metric}={outcome.value:.6g}"
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in outcome.params.items())
    why = f" ({outcome.reason})" if outcome.reason else ""
    console.info(f"trial {outcome.number + 1}/{total} {outcome.state}{' (resumed)' if adopted else ''}{value} "
                 f"[{params}] {outcome.seconds:.1f}s{why}")
