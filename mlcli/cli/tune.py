"""`mlcli tune`: a resumable, reproducible hyperparameter sweep over a config's tune.space
(docs/contract.md §8)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import List, Optional

import typer

from mlcli import console
from mlcli.cli.options import (
    check_gates,
    fail_over_option,
    fail_under_option,
    json_option,
    parse_gates,
    quiet_option,
    resume_option,
    set_option,
    verbose_option,
)
from mlcli.cli.train import sigterm_interrupts
from mlcli.errors import UsageError
from mlcli.settings import Settings, use_settings

SWEEPS = Path("sweeps")


def tune(
    config: Path = typer.Argument(..., metavar="CONFIG", help="The YAML config, with a tune: section.",
                                  show_default=False),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Sweep directory (default sweeps/<name>); rerunning on it continues the sweep."),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="Trials in total (overrides tune.trials)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Trials at once, each in its own process."),
    resume: bool = resume_option(),
    set_: Optional[List[str]] = set_option(),
    json_: bool = json_option(),
    quiet: bool = quiet_option(),
    verbose: bool = verbose_option(),
    fail_under: Optional[List[str]] = fail_under_option(help="Exit 5 if the best trial's METRIC is below VALUE."),
    fail_over: Optional[List[str]] = fail_over_option(help="Exit 5 if the best trial's METRIC is above VALUE."),
    worker: bool = typer.Option(False, "--worker", hidden=True, help="Run trials only (a --jobs worker)."),
) -> None:
    """Sweep hyperparameters (Optuna): every trial a run directory; resumable and reproducible."""
    use_settings(Settings(quiet=quiet, json=json_ and not worker, verbose=verbose))
    # deferred: config, Optuna and the training stage are not for `mlcli --help`
    from mlcli.config import load_config
    from mlcli.tune import sweep
    from mlcli.tune.space import check_tune

    under = parse_gates(fail_under, "--fail-under")
    over = parse_gates(fail_over, "--fail-over")
    sets = list(set_ or [])
    if trials is not None:
        sets.append(f"tune.trials={trials}")
    loaded = load_config(config, sets)
    check_tune(loaded, gates=list(under) + list(over))
    name = loaded.config.name or "sweep"
    sweep_dir = output if output is not None else SWEEPS / name
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise UsageError(f"--output {sweep_dir}: exists and is not a directory", hint="choose another --output")
    total = sweep.total_trials(loaded)

    def line(outcome, adopted):  # one plain line per finished trial
        sweep.echo(outcome, adopted, total, loaded.config.tune.metric)

    if worker:
        sweep.work(loaded, sweep_dir, line)
        return
    report = line
    live = None
    if jobs == 1 and console.is_terminal() and not quiet:
        # A terminal: a table of the trials, redrawn as each one finishes (workers of --jobs print lines).
        from rich.live import Live  # deferred: only a terminal sees the table

        finished: list[dict] = []
        space = list(loaded.config.tune.space)

        def redraw(outcome, adopted):
            finished.append({"number": outcome.number, "state": outcome.state + (" (resumed)" if adopted else ""),
                             "value": outcome.value, "params": outcome.params, "seconds": outcome.seconds})
            live.update(sweep.outputs.trials_table(finished, space, loaded.config.tune.metric))

        live = Live(sweep.outputs.trials_table([], space, loaded.config.tune.metric), console=console.stderr(),
                    transient=False)
        report = redraw
    del resume  # rerunning the same command continues the sweep; --resume says so explicitly
    args = [str(config), "--output", str(sweep_dir), *sum((["--set", s] for s in sets), [])]
    if quiet:
        args.append("--quiet")
    console.info(f"sweep {sweep_dir}: {total} trial(s) in total, {loaded.config.tune.sampler} sampler, "
                 f"{loaded.config.tune.pruner} pruner, {jobs} at once")
    # SIGTERM between trials ends like Ctrl-C (exit 130); inside a trial, the run's own handler saves its state
    # first, and the trial stays running in the study for the next `mlcli tune` to resume.
    with sigterm_interrupts(), (live if live is not None else contextlib.nullcontext()):
        result = sweep.run_sweep(loaded, sweep_dir, jobs, sweep.python_worker_command(args), report)
    if live is None and console.is_terminal() and not quiet:
        sweep.outputs.show_table(result.rows, result.space, result.metric)
    for note in result.notes:
        console.info(f"note: {note}")
    if result.status == "failed":
        error = sweep.all_failed_error(result)
        if json_:
            console.data_json(result.document())
        raise error
    if json_:
        console.data_json(result.document())
    if result.best is not None:
        console.info(f"best: trial {result.best['trial']} {result.metric}={result.best['value']:.6g} "
                     f"{result.best['params']} — {sweep_dir / sweep.outputs.BEST}")
    best_metrics = {}
    if result.best is not None:
        from mlcli.run import files  # deferred: only a finished sweep reads its best run

        metrics_file = Path(result.best["run_dir"]) / files.METRICS
        best_metrics = files.read_json(metrics_file) if metrics_file.is_file() else {}
    check_gates(best_metrics, under, over)
