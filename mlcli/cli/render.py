"""What several commands show on stderr: a metrics table, and a training run's summary (train, finetune)."""

from __future__ import annotations

from typing import Any

from mlcli import console


def metrics_table(title: str, metrics: dict[str, float]) -> Any:
    """A two-column table, metric and value (4 decimals), for console.show."""
    # deferred: rich.table is only needed once a command has results to show
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}")
    return table


def render_training(result) -> None:
    for note in result.notes:
        console.info(note)
    console.show(metrics_table(
        f"{result.status}: {result.epochs_completed} epoch(s) on {result.device} ({result.precision})", result.metrics
    ))
    if getattr(result, "cost", None):
        # deferred: the cost table's module imports numpy and rich
        from mlcli.model.table import show_costs

        show_costs(result.cost)
    params = result.parameters
    if params:
        console.info(f"parameters: {params['trainable']:,} trainable, {params['non_trainable']:,} non-trainable")
    restored = result.model_epoch not in (None, result.epochs_completed)  # early stopping's best weights
    if result.best:
        line = f"best epoch: {result.best['epoch']} ({result.best['monitor']} {result.best['value']:.4f})"
        if restored and result.model_epoch != result.best["epoch"]:
            line += (f", kept in best.keras; model.keras and metrics.json hold epoch {result.model_epoch}, "
                     "the best by early stopping")
        console.info(line)
    elif restored:
        console.info(f"model.keras and metrics.json hold epoch {result.model_epoch}, the best by early stopping")
    console.info(f"run directory: {result.run_dir}")
