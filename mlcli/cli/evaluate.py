"""`mlcli evaluate`: a checkpoint and its run's own files -> numbers, shown and gated."""

from __future__ import annotations

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
    unsafe_option,
    verbose_option,
)
from mlcli.cli.render import metrics_table
from mlcli.settings import Settings, use_settings

_MATRIX_LIMIT = 20  # classes; a wider confusion matrix does not fit a terminal (it is in --json)


def evaluate(
    checkpoint: Path = typer.Argument(..., metavar="CKPT", help="A run directory or a .keras file.",
                                      show_default=False),
    data: Optional[str] = typer.Option(
        None, "--data", metavar="SOURCE",
        help="Data to evaluate (.csv .parquet .npz, builtin:NAME or builtin:NAME/SPLIT, - for CSV on stdin); "
             "default the run's data.test, else its validation split.",
    ),
    label: Optional[List[str]] = typer.Option(
        None, "--label", metavar="COLUMN",
        help="The label column of --data, when it is not the run's (for a .keras file outside a run: not 'label'); "
             "once per target for several.",
    ),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Rows per forward pass."),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="FILE",
                                        help="Also write a PNG: the confusion matrix (classification), or "
                                             "predicted versus actual (regression)."),
    threshold: Optional[str] = typer.Option(
        None, "--threshold", metavar="T",
        help="Binary classifiers: the positive class (the second label) when its probability is above T "
             "(default 0.5); best: the F1-best threshold training recorded on the validation split."),
    json_: bool = json_option(),
    quiet: bool = quiet_option(),
    verbose: bool = verbose_option(),
    unsafe: bool = unsafe_option(),
    fail_under: Optional[List[str]] = fail_under_option(help="Exit 5 if METRIC is below VALUE."),
    fail_over: Optional[List[str]] = fail_over_option(help="Exit 5 if METRIC is above VALUE."),
) -> None:
    """Evaluate a checkpoint with its run's own loss and metrics (plus a confusion matrix)."""
    # deferred: the evaluate stage imports numpy and pydantic, and TensorFlow when it runs
    from mlcli.use.evaluate import evaluate as run_evaluate
    from mlcli.use.threshold import parse_threshold

    use_settings(Settings(quiet=quiet, json=json_, verbose=verbose, unsafe=unsafe))
    decision = parse_threshold(threshold)
    under = parse_gates(fail_under, "--fail-under")
    over = parse_gates(fail_over, "--fail-over")
    result = run_evaluate(checkpoint, data, batch_size, list(under) + list(over), plot=plot, labels=label,
                          unsafe=unsafe, threshold=decision)
    if json_:
        console.data_json(result.document())
    _render_evaluation(result)
    check_gates(result.metrics, under, over)


def _render_evaluation(result) -> None:
    # deferred: rich.table is only needed once there are results to show
    from rich.table import Table

    for note in result.notes:
        console.info(note)
    console.show(metrics_table(f"{result.checkpoint} on {result.data}: {result.samples:,} rows", result.metrics))
    if result.task != "classification":
        return
    labels = [str(c) for c in result.classes]
    if len(labels) <= _MATRIX_LIMIT:
        matrix = Table(title="confusion matrix (rows: true label, columns: predicted)")
        matrix.add_column("true \\ predicted")
        for label in labels:
            matrix.add_column(label, justify="right")
        for label, row in zip(labels, result.confusion.tolist()):
            matrix.add_row(label, *[str(v) for v in row])
        console.show(matrix)
    else:
        console.info(f"confusion matrix: {len(labels)} classes, too wide to show — it is in --json")
    scores = Table(title="per class")
    for name in ("label", "precision", "recall", "f1", "support"):
        scores.add_column(name, justify="left" if name == "label" else "right")
    for row in result.per_class:
        scores.add_row(str(row["label"]), f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
                       f"{row['support']:,}")
    console.show(scores)
