"""`mlcli evaluate` and `mlcli predict`: a checkpoint and its run's own files -> numbers or predictions."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from mlcli import console
from mlcli.cli.app import UnsafeOption, app
from mlcli.cli.train_cmds import _check_gates, _parse_gates

_MATRIX_LIMIT = 20  # classes; a wider confusion matrix does not fit a terminal (it is in --json)


@app.command()
def evaluate(
    checkpoint: Path = typer.Argument(..., metavar="CKPT", help="A run directory or a .keras file.",
                                      show_default=False),
    data: Optional[str] = typer.Option(
        None, "--data", metavar="SOURCE",
        help="Data to evaluate (.csv .parquet .npz, builtin:NAME or builtin:NAME/SPLIT, - for CSV on stdin); "
             "default the run's data.test, else its validation split.",
    ),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Rows per forward pass."),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="FILE",
                                        help="Also write the confusion matrix as a PNG (classification)."),
    json_: bool = typer.Option(False, "--json", help="One JSON document on stdout; human output on stderr."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Nothing on stderr but errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show TensorFlow's own log lines."),
    unsafe: bool = UnsafeOption,
    fail_under: Optional[List[str]] = typer.Option(None, "--fail-under", metavar="METRIC=VALUE",
                                                   help="Exit 5 if METRIC is below VALUE."),
    fail_over: Optional[List[str]] = typer.Option(None, "--fail-over", metavar="METRIC=VALUE",
                                                  help="Exit 5 if METRIC is above VALUE."),
) -> None:
    """Evaluate a checkpoint with its run's own loss and metrics (plus a confusion matrix)."""
    from mlcli import runtime
    from mlcli.use.evaluate import evaluate as run_evaluate

    console.set_quiet(quiet)
    console.set_json(json_)
    runtime.set_verbose(verbose)
    under = _parse_gates(fail_under, "--fail-under")
    over = _parse_gates(fail_over, "--fail-over")
    result = run_evaluate(checkpoint, data, batch_size, list(under) + list(over), plot=plot, unsafe=unsafe)
    if json_:
        console.data_json(result.document())
    _render_evaluation(result)
    _check_gates(result.metrics, under, over)


def _render_evaluation(result) -> None:
    from rich.table import Table

    for note in result.notes:
        console.info(note)
    table = Table(title=f"{result.checkpoint} on {result.data}: {result.samples:,} rows")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.items():
        table.add_row(name, f"{value:.4f}")
    console.show(table)
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


@app.command()
def predict(
    checkpoint: Path = typer.Argument(..., metavar="CKPT", help="A run directory or a .keras file.",
                                      show_default=False),
    input_: str = typer.Argument(..., metavar="INPUT",
                                 help="A .csv, .parquet or .npz file, builtin:NAME or builtin:NAME/SPLIT, "
                                      "or - for CSV on stdin.",
                                 show_default=False),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o",
        help="Output file: .csv, .parquet or .jsonl by its extension (default: CSV on stdout)."
    ),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Rows per forward pass."),
    keep: Optional[List[str]] = typer.Option(None, "--keep", metavar="COLUMN",
                                             help="Copy this input column to the output, first (repeatable)."),
    no_probabilities: bool = typer.Option(False, "--no-probabilities", help="Only the predicted label."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Nothing on stderr but errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show TensorFlow's own log lines."),
    unsafe: bool = UnsafeOption,
) -> None:
    """Predict for every row of INPUT, streaming: prediction in the original labels, prob_<label> per class."""
    from mlcli import runtime
    from mlcli.use.predict import predict as run_predict

    console.set_quiet(quiet)
    runtime.set_verbose(verbose)
    try:
        result = run_predict(checkpoint, input_, output, batch_size, keep or [], not no_probabilities,
                             unsafe=unsafe)
    except BrokenPipeError:
        # `mlcli predict ... | head`: the reader has all it wants; that is not an error.
        _silence_stdout()
        raise typer.Exit(0) from None
    console.info(f"{result.rows:,} row(s) predicted -> {result.output}")


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file descriptor (tests): nothing will flush to a closed pipe
