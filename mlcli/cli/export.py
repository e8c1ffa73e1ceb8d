"""`mlcli export`: a checkpoint as a SavedModel, TFLite or ONNX artifact, checked before it is kept."""

from __future__ import annotations

from pathlib import Path

import typer

from mlcli import console
from mlcli.cli.options import json_option, quiet_option, unsafe_option, verbose_option
from mlcli.settings import Settings, use_settings


def export(
    checkpoint: Path = typer.Argument(..., metavar="CKPT", help="A run directory or a .keras file.",
                                      show_default=False),
    format_: str = typer.Option(..., "--format", "-f", metavar="savedmodel|tflite|onnx",
                                help="savedmodel (a directory), tflite (a .tflite file) or onnx (a .onnx file).",
                                show_default=False),
    output: Path = typer.Option(..., "--output", "-o", metavar="PATH",
                                help="Where the artifact goes; signature.json is written beside it.",
                                show_default=False),
    tolerance: float = typer.Option(
        1e-5, "--tolerance", metavar="FLOAT",
        help="Largest allowed difference from model.keras (scaled by |value| above 1); above it, exit 1.",
    ),
    json_: bool = json_option(),
    quiet: bool = quiet_option(),
    verbose: bool = verbose_option(help="Show TensorFlow's and the converter's log."),
    unsafe: bool = unsafe_option(),
) -> None:
    """Export a checkpoint for serving; the artifact takes raw features and is checked against model.keras."""
    # deferred: the export stage imports numpy and pydantic, and TensorFlow when it runs
    from mlcli.use.export import export as run_export

    use_settings(Settings(quiet=quiet, json=json_, verbose=verbose, unsafe=unsafe))
    result = run_export(checkpoint, format_.strip().lower(), output, tolerance=tolerance, verbose=verbose,
                        unsafe=unsafe)
    if json_:
        console.data_json(result.document())
    for note in result.notes:
        console.info(note)
    parity = result.signature["parity"]
    console.info(
        f"{result.format}: {result.artifact} — matches model.keras on {parity['rows_from']}: largest difference "
        f"{parity['max_abs_diff']:.3g}, {parity['max_rel_diff']:.3g} relative to max(1, |value|) "
        f"(allowed {parity['tolerance']:g})"
    )
    console.info(f"signature: {result.signature_path}")
