"""`mlcli predict`: a checkpoint and rows in -> predictions out, streamed batch by batch."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from mlcli import console
from mlcli.cli.options import (
    json_option,
    output_option,
    progress_every_option,
    quiet_option,
    unsafe_option,
    verbose_option,
)
from mlcli.errors import UsageError
from mlcli.heartbeat import Heartbeat
from mlcli.settings import Settings, use_settings


def predict(
    checkpoint: Path = typer.Argument(..., metavar="CKPT", help="A run directory or a .keras file.",
                                      show_default=False),
    input_: str = typer.Argument(..., metavar="INPUT",
                                 help="A .csv, .parquet or .npz file, builtin:NAME or builtin:NAME/SPLIT, "
                                      "or - for CSV on stdin.",
                                 show_default=False),
    output: Optional[Path] = output_option(
        help="Output file: .csv, .parquet or .jsonl by its extension (default: CSV on stdout)."
    ),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Rows per forward pass."),
    keep: Optional[List[str]] = typer.Option(None, "--keep", metavar="COLUMN",
                                             help="Copy this input column to the output, first (repeatable)."),
    no_probabilities: bool = typer.Option(False, "--no-probabilities", help="Only the predicted label."),
    threshold: Optional[str] = typer.Option(
        None, "--threshold", metavar="T",
        help="Binary classifiers: the positive class (the second label) when its probability is above T "
             "(default 0.5); best: the F1-best threshold training recorded on the validation split."),
    json_: bool = json_option(help='With --output FILE: a summary on stdout, {"checkpoint", "input", "output", '
                                   '"rows"}; human output on stderr.'),
    quiet: bool = quiet_option(),
    verbose: bool = verbose_option(),
    unsafe: bool = unsafe_option(),
    progress_every: Optional[float] = progress_every_option(),
) -> None:
    """Predict for every row of INPUT, streaming: prediction in the original labels, prob_<label> per class."""
    # deferred: the predict stage imports numpy and pydantic, and TensorFlow and pyarrow when it runs
    from mlcli.use.predict import predict as run_predict
    from mlcli.use.predict import to_stdout
    from mlcli.use.threshold import parse_threshold

    use_settings(Settings(quiet=quiet, json=json_, verbose=verbose, unsafe=unsafe))
    decision = parse_threshold(threshold)
    if json_ and to_stdout(output):
        raise UsageError("--json needs --output FILE: without it, stdout holds the predictions themselves (CSV)",
                         hint=f"mlcli predict {checkpoint} {input_} --output predictions.csv --json")
    started = time.monotonic()
    try:
        with Heartbeat(progress_every, lambda: f"predict: still running on {input_} "
                                               f"({time.monotonic() - started:.0f}s so far)"):
            result = run_predict(checkpoint, input_, output, batch_size, keep or [], not no_probabilities,
                                 unsafe=unsafe, threshold=decision)
    except BrokenPipeError:
        # `mlcli predict ... | head`: the reader has all it wants; that is not an error.
        _silence_stdout()
        raise typer.Exit(0) from None
    if json_:
        console.data_json(result.document())
    console.info(f"{result.rows:,} row(s) predicted -> {result.output}")


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file descriptor (tests): nothing will flush to a closed pipe
