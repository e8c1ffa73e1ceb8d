"""The files of a sweep directory besides the study and the trials' run directories (docs/contract.md §8):
leaderboard.csv, best.yaml and plots/ (optimization history, parameter importance). All are rewritten
from the study whenever a sweep ends, so a resumed or shared sweep's files describe the whole study."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from mlcli import console
from mlcli.run import files
from mlcli.tune.trial import trial_dir
from mlcli.use.plots import _figure, _png  # one way to draw a PNG, as explain's plots do

LEADERBOARD = "leaderboard.csv"
BEST = "best.yaml"
PLOTS = "plots"
HISTORY_PNG = "history.png"
IMPORTANCE_PNG = "importance.png"

STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "fail", "RUNNING": "running", "WAITING": "waiting"}


def trial_rows(study, sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per trial of the study, in trial order: number, state, reason, params, value, seconds, run_dir."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        rows.append({
            "number": trial.number,
            "state": STATES.get(trial.state.name, trial.state.name.lower()),
            "value": trial.value if trial.value is not None else (
                trial.intermediate_values[max(trial.intermediate_values)] if trial.intermediate_values else None),
            "params": dict(trial.params),
            "seconds": trial.user_attrs.get("seconds"),
            "train_seconds": trial.user_attrs.get("train_seconds"),
            "reason": trial.user_attrs.get("reason"),
            "exit_code": trial.user_attrs.get("exit_code"),
            "run_dir": str(trial_dir(sweep_dir, trial.number)),
        })
    return rows


def write_leaderboard(sweep_dir: Path, rows: list[dict], space: list[str], metric: str) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["number", "state", *space, metric, "seconds", "reason"])
    for row in rows:
        writer.writerow([row["number"], row["state"], *(row["params"].get(k, "") for k in space),
                         "" if row["value"] is None else repr(float(row["value"])),
                         "" if row["seconds"] is None else row["seconds"], row["reason"] or ""])
    files.write_text(sweep_dir / LEADERBOARD, buffer.getvalue())


def write_best(sweep_dir: Path, best_number: int | None) -> Path | None:
    """best.yaml: the best trial's own resolved config.yaml (no tune: section), which `mlcli train` runs."""
    if best_number is None:
        return None
    source = trial_dir(sweep_dir, best_number) / files.CONFIG
    files.write_text(sweep_dir / BEST, "# the best trial's resolved config; run it with: mlcli train "
                     f"{sweep_dir / BEST}\n" + source.read_text(encoding="utf-8"))
    return sweep_dir / BEST


def write_plots(study, sweep_dir: Path, rows: list[dict], metric: str, maximize: bool) -> list[str]:
    """plots/history.png always (once a trial has a value); plots/importance.png with two finished trials
    or more. Returns notes for what could not be drawn; a picture never fails a sweep."""
    notes: list[str] = []
    done = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    try:
        if done:
            files.write_atomic(sweep_dir / PLOTS / HISTORY_PNG, _history_png(rows, metric, maximize))
        importance = _importance(study) if len(done) >= 2 else None
        if importance:
            files.write_atomic(sweep_dir / PLOTS / IMPORTANCE_PNG, _importance_png(importance, metric))
        else:
            notes.append("plots/importance.png needs at least 2 completed trials with different parameters")
    except Exception as exc:  # noqa: BLE001 — a picture is a convenience, like a run's plots
        notes.append(f"plots could not be drawn: {type(exc).__name__}: {exc}")
    return notes


def _importance(study) -> dict[str, float] | None:
    import optuna  # deferred: only a sweep needs Optuna

    try:
        importance = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError):  # e.g. every trial had the same parameters
        return None
    return {k: float(v) for k, v in importance.items() if math.isfinite(float(v))} or None


def _history_png(rows: list[dict], metric: str, maximize: bool) -> bytes:
    figure = _figure(7, 4)
    axes = figure.add_subplot()
    done = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    pruned = [r for r in rows if r["state"] == "pruned" and r["value"] is not None]
    axes.scatter([r["number"] for r in done], [r["value"] for r in done], label="completed trial", color="#1f77b4")
    if pruned:
        axes.scatter([r["number"] for r in pruned], [r["value"] for r in pruned], label="pruned (last value)",
                     color="#aaaaaa", marker="x")
    best, line = None, []
    for row in done:
        if best is None or (row["value"] > best if maximize else row["value"] < best):
            best = row["value"]
        line.append((row["number"], best))
    axes.step([n for n, _ in line], [b for _, b in line], where="post", color="#d62728", label="best so far")
    axes.set_xlabel("trial")
    axes.set_ylabel(metric)
    axes.set_title(f"Optimization history ({'maximize' if maximize else 'minimize'} {metric})")
    axes.legend()
    return _png(figure)


def _importance_png(importance: dict[str, float], metric: str) -> bytes:
    names = list(importance)[::-1]
    figure = _figure(7, 1.2 + 0.45 * len(names))
    axes = figure.add_subplot()
    axes.barh(names, [importance[n] for n in names], color="#1f77b4")
    axes.set_xlabel(f"importance for {metric} (fANOVA, sums to 1)")
    axes.set_title("Parameter importance")
    return _png(figure)


def trials_table(rows: list[dict], space: list[str], metric: str):
    """The trials as a Rich table (on a terminal: updated live as trials finish, and shown at the end)."""
    from rich.table import Table  # deferred: only a terminal sees the table

    table = Table(title="trials")
    for name in ["#", "state", *space, metric, "seconds"]:
        table.add_column(name)
    for row in rows:
        value = "" if row["value"] is None else f"{row['value']:.4g}"
        table.add_row(str(row["number"]), row["state"], *(_short(row["params"].get(k)) for k in space), value,
                      "" if row["seconds"] is None else f"{row['seconds']:.1f}")
    return table


def show_table(rows: list[dict], space: list[str], metric: str) -> None:
    console.show(trials_table(rows, space, metric))


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
