"""`mlcli train` and `mlcli finetune`: one shared path from flags to a run directory."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import List, Optional

import typer

from mlcli import console
from mlcli.cli.app import SetOption, app


def _parse_gates(values: list[str] | None, flag: str) -> dict[str, float]:
    from mlcli.errors import UsageError

    gates: dict[str, float] = {}
    for item in values or []:
        name, sep, text = item.partition("=")
        try:
            threshold = float(text)
        except ValueError:
            threshold = None
        if not sep or not name or threshold is None:
            raise UsageError(f"{flag} {item!r}: expected METRIC=NUMBER, e.g. {flag} accuracy=0.9")
        gates[name.strip()] = threshold
    return gates


def _check_gates(metrics: dict, under: dict[str, float], over: dict[str, float]) -> None:
    from mlcli.errors import GateFailed

    failed = []
    for name, threshold in under.items():
        value = metrics.get(name)
        if value is None or value < threshold:
            failed.append(f"{name} = {value if value is not None else 'missing'} is below {threshold}")
    for name, threshold in over.items():
        value = metrics.get(name)
        if value is None or value > threshold:
            failed.append(f"{name} = {value if value is not None else 'missing'} is above {threshold}")
    if failed:
        raise GateFailed("; ".join(failed) + " (everything was saved)")


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM before training starts (loading data, importing TensorFlow) ends like Ctrl-C: exit 130.
    During training, the run's own handler takes over and saves state first."""
    import signal

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


def _render_training(result) -> None:
    from rich.table import Table

    for note in result.notes:
        console.info(note)
    table = Table(title=f"{result.status}: {result.epochs_completed} epoch(s) on {result.device} ({result.precision})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        table.add_row(name, f"{value:.4f}")
    console.show(table)
    params = result.parameters
    if params:
        console.info(f"parameters: {params['trainable']:,} trainable, {params['non_trainable']:,} non-trainable")
    if result.best:
        console.info(f"best epoch: {result.best['epoch']} ({result.best['monitor']} {result.best['value']:.4f})")
    console.info(f"run directory: {result.run_dir}")


def _run_training_command(
    kind: str, config: Optional[Path], parent: Optional[Path], output: Optional[Path], sets: list[str],
    resume: bool, force: bool, device: Optional[str], seed: Optional[int], json_: bool, quiet: bool,
    verbose: bool, fail_under: list[str] | None, fail_over: list[str] | None, *, unsafe: bool = False,
) -> None:
    from mlcli import runtime
    from mlcli.errors import UsageError

    console.set_quiet(quiet)
    console.set_json(json_)
    runtime.set_verbose(verbose)
    if resume and force:
        raise UsageError("--resume and --force contradict each other: continue the run, or replace it")
    under = _parse_gates(fail_under, "--fail-under")
    over = _parse_gates(fail_over, "--fail-over")
    overrides = list(sets)
    if seed is not None:
        overrides.append(f"seed={seed}")
    if device is not None:
        overrides.append(f"runtime.device={device}")

    with _sigterm_interrupts():
        result = _plan_and_run(kind, config, parent, output, overrides, resume, force, under, over, json_,
                               unsafe)
    if json_:
        console.data_json(result.document())
    _render_training(result)
    _check_gates(result.metrics, under, over)


def _plan_and_run(kind, config, parent, output, overrides, resume, force, under, over, json_, unsafe):
    import sys

    from mlcli.config import check_config
    from mlcli.errors import Diverged, Interrupted
    from mlcli.training import session

    plan = session.plan_run(kind, config, parent, output, overrides, resume, force)
    check_config(plan.loaded, gates=list(under) + list(over))
    if plan.finished is not None:
        return plan.finished
    try:
        return session.execute(plan, command=["mlcli", *sys.argv[1:]] if sys.argv else [], unsafe=unsafe)
    except (Diverged, Interrupted) as exc:
        if json_ and getattr(exc, "document", None):
            console.data_json(exc.document)
        raise


# Options train and finetune share (CONTRACT §1: finetune takes "same options as train").
OutputOption = typer.Option(None, "--output", "-o", help="Run directory (default runs/<name>).")
ResumeOption = typer.Option(False, "--resume", help="Continue an unfinished run (idempotent).")
ForceOption = typer.Option(False, "--force", help="Replace a run already in --output.")
DeviceOption = typer.Option(None, "--device", help="auto | cpu | gpu | gpu:0,1 | cpu:N (N logical CPUs)")
SeedOption = typer.Option(None, "--seed", help="Override the config's seed.")
JsonOption = typer.Option(False, "--json", help="One JSON document on stdout; human output on stderr.")
QuietOption = typer.Option(False, "--quiet", "-q", help="Nothing on stderr but errors.")
VerboseOption = typer.Option(False, "--verbose", "-v", help="Show TensorFlow's own log lines.")
FailUnderOption = typer.Option(None, "--fail-under", metavar="METRIC=VALUE", help="Exit 5 if METRIC ends below VALUE.")
FailOverOption = typer.Option(None, "--fail-over", metavar="METRIC=VALUE", help="Exit 5 if METRIC ends above VALUE.")


@app.command()
def train(
    config: Optional[Path] = typer.Argument(
        None, help="The YAML config; with --resume, a run directory to continue.", show_default=False
    ),
    output: Optional[Path] = OutputOption,
    set_: Optional[List[str]] = SetOption,
    resume: bool = ResumeOption,
    force: bool = ForceOption,
    device: Optional[str] = DeviceOption,
    seed: Optional[int] = SeedOption,
    json_: bool = JsonOption,
    quiet: bool = QuietOption,
    verbose: bool = VerboseOption,
    fail_under: Optional[List[str]] = FailUnderOption,
    fail_over: Optional[List[str]] = FailOverOption,
) -> None:
    """Train a model from a YAML config into a self-describing run directory."""
    _run_training_command("train", config, None, output, set_ or [], resume, force, device, seed, json_,
                          quiet, verbose, fail_under, fail_over)
