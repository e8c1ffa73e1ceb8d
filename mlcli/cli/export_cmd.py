"""`mlcli export`: a checkpoint as a SavedModel, TFLite or ONNX artifact, checked before it is kept."""

from __future__ import annotations

from pathlib import Path

import typer

from mlcli import console
from mlcli.cli.app import UnsafeOption, app


@app.command()
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
    json_: bool = typer.Option(False, "--json", help="One JSON document on stdout; human output on stderr."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Nothing on stderr but errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show TensorFlow's and the converter's log."),
    unsafe: bool = UnsafeOption,
) -> None:
    """Export a checkpoint for serving; the artifact takes raw features and is checked against model.keras."""
    from mlcli import runtime
    from mlcli.use.export import export as run_export

    console.set_quiet(quiet)
    console.set_json(json_)
    runtime.set_verbose(verbose)
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
