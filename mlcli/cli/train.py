"""`mlcli train`, and the path from flags to a run directory that `mlcli finetune` shares."""

from __future__ import annotations

import contextlib
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import typer

from mlcli import console
from mlcli.cli.options import (
    check_gates,
    device_option,
    fail_over_option,
    fail_under_option,
    force_option,
    json_option,
    output_option,
    parse_gates,
    progress_every_option,
    quiet_option,
    resume_option,
    seed_option,
    set_option,
    verbose_option,
)
from mlcli.cli.render import render_training
from mlcli.errors import ConfigError, Diverged, Interrupted, UsageError
from mlcli.settings import Settings, active_settings, use_settings


@contextlib.contextmanager
def sigterm_interrupts():
    """SIGTERM before training starts (loading data, importing TensorFlow) ends like Ctrl-C: exit 130.
    During training, the run's own handler takes over and saves state first."""

    def _raise(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_training(
    kind: str, config: Optional[Path], parent: Optional[Path], output: Optional[Path], sets: list[str],
    resume: bool, force: bool, device: Optional[str], seed: Optional[int], json_: bool,
    fail_under: list[str] | None, fail_over: list[str] | None, progress_every: float | None = None,
    folds: int | None = None,
) -> None:
    """train and finetune after their settings are active: plan, run, render, then the gates.
    `progress_every`: --progress-every, seconds between progress lines inside long epochs."""
    if resume and force:
        raise UsageError("--resume and --force contradict each other: continue the run, or replace it")
    under = parse_gates(fail_under, "--fail-under")
    over = parse_gates(fail_over, "--fail-over")
    overrides = list(sets)
    flags: dict[str, str] = {}  # the --set each flag stands for -> the flag as the user typed it
    for flag, key, value in (("--seed", "seed", seed), ("--device", "runtime.device", device)):
        if value is not None:
            overrides.append(f"{key}={value}")
            flags[f"--set {key}={value}"] = f"{flag} {value}"

    with sigterm_interrupts():
        try:
            if folds is not None:
                # deferred: cross-validation loads the config and the training stage
                from mlcli.tune.folds import run_folds

                def one_fold(fold_dir, fold_overrides, fold_resume):
                    return _plan_and_run(kind, config, parent, fold_dir, fold_overrides, fold_resume, force, under,
                                         over, False, progress_every)

                result = run_folds(one_fold, config, output, overrides, folds, resume, force)
                if json_:
                    console.data_json(result.document())
                console.info(f"cross-validation, {folds} folds: " + ", ".join(
                    f"{name} {result.mean[name]:.4g} ± {result.std[name]:.2g}" for name in result.mean)
                    + f" — {result.cv_dir / 'cv.json'}")
                check_gates(result.mean, under, over)
                return
            result = _plan_and_run(kind, config, parent, output, overrides, resume, force, under, over, json_,
                                   progress_every)
        except ConfigError as exc:
            # `--device tpu` is reported as the flag the user typed, not as the --set it became.
            raise ConfigError([replace(p, source=flags.get(p.source, p.source)) for p in exc.problems],
                              exc.hint) from None
    if json_:
        console.data_json(result.document())
    render_training(result)
    check_gates(result.metrics, under, over)


def _plan_and_run(kind, config, parent, output, overrides, resume, force, under, over, json_, progress_every):
    # deferred: config and the training session import pydantic, numpy and (when run) TensorFlow
    from mlcli.config import check_config
    from mlcli.training import session

    plan = session.plan_run(kind, config, parent, output, overrides, resume, force)
    check_config(plan.loaded, gates=list(under) + list(over))
    if plan.finished is not None:
        return plan.finished
    try:
        return session.execute(plan, command=["mlcli", *sys.argv[1:]] if sys.argv else [],
                               unsafe=active_settings().unsafe, progress_every=progress_every)
    except (Diverged, Interrupted) as exc:
        if json_ and getattr(exc, "document", None):
            console.data_json(exc.document)
        raise


def train(
    config: Optional[Path] = typer.Argument(
        None, metavar="CONFIG", help="The YAML config; with --resume, a run directory to continue.",
        show_default=False,
    ),
    output: Optional[Path] = output_option(),
    set_: Optional[List[str]] = set_option(),
    resume: bool = resume_option(),
    force: bool = force_option(),
    device: Optional[str] = device_option(),
    seed: Optional[int] = seed_option(),
    json_: bool = json_option(),
    quiet: bool = quiet_option(),
    verbose: bool = verbose_option(),
    fail_under: Optional[List[str]] = fail_under_option(),
    fail_over: Optional[List[str]] = fail_over_option(),
    progress_every: Optional[float] = progress_every_option(),
    folds: Optional[int] = typer.Option(
        None, "--folds", metavar="K", show_default=False,
        help="K-fold cross-validation: runs DIR/fold-1..K (stratified for classification) and DIR/cv.json; "
             "gates apply to the folds' mean.",
    ),
) -> None:
    """Train a model from a YAML config into a self-describing run directory."""
    use_settings(Settings(quiet=quiet, json=json_, verbose=verbose))
    run_training("train", config, None, output, set_ or [], resume, force, device, seed, json_, fail_under, fail_over,
                 progress_every, folds)
