"""`mlcli explain`: which inputs drive a model's predictions, and what its layers do (docs/contract.md §10)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from mlcli import console
from mlcli.cli.options import json_option, quiet_option, seed_option, unsafe_option, verbose_option
from mlcli.errors import UsageError
from mlcli.settings import Settings, use_settings

_METHODS = ("permutation", "gradients")
_BASELINES = ("zeros", "mean")
_SHOWN = 20  # rows of a table on stderr; every one is in --json


def explain(
    checkpoint: Path = typer.Argument(..., metavar="CKPT", help="A run directory or a .keras file.",
                                      show_default=False),
    data: Optional[str] = typer.Option(
        None, "--data", metavar="SOURCE",
        help="Labelled data to explain on (as evaluate reads it); default the run's data.test, else its validation "
             "split.",
    ),
    label: Optional[List[str]] = typer.Option(None, "--label", metavar="COLUMN",
                                              help="The label column of --data, when it is not the run's."),
    rows: Optional[int] = typer.Option(None, "--rows", min=1, metavar="N",
                                       help="Use the first N rows of the data (default: all for permutation, "
                                            "8 for gradients)."),
    method: Optional[str] = typer.Option(None, "--method", metavar="permutation|gradients",
                                         help="Default: permutation for tables, gradients for images."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="DIR",
                                          help="Where the plots and TensorBoard histograms go (default <run>/explain)."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Shuffles per column (permutation)."),
    metric: Optional[str] = typer.Option(None, "--metric", metavar="NAME",
                                         help="What permutation watches: accuracy | loss | mae | mse | rmse "
                                              "(default: the model's first metric)."),
    baseline: Optional[str] = typer.Option(None, "--baseline", metavar="zeros|mean",
                                           help="Integrated gradients' starting point (default: zeros for images, "
                                                "the training mean for tables)."),
    seed: Optional[int] = seed_option(),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Rows per forward pass."),
    json_: bool = json_option(),
    quiet: bool = quiet_option(),
    verbose: bool = verbose_option(),
    unsafe: bool = unsafe_option(),
) -> None:
    """Explain a model: permutation importance or integrated gradients, layer statistics, FLOPs."""
    # deferred: the explain stage imports numpy and pydantic, and TensorFlow when it runs
    from mlcli.explain.explain import ExplainRequest
    from mlcli.explain.explain import explain as run_explain

    use_settings(Settings(quiet=quiet, json=json_, verbose=verbose, unsafe=unsafe))
    method = _choice(method, _METHODS, "--method")
    baseline = _choice(baseline, _BASELINES, "--baseline")
    result = run_explain(ExplainRequest(checkpoint, data=data, labels=label, rows=rows, method=method,
                                        output=output, repeats=repeats, metric=metric, baseline=baseline, seed=seed,
                                        batch_size=batch_size, unsafe=unsafe))
    if json_:
        console.data_json(result.document())
    _render(result)


def _choice(value: str | None, allowed: tuple[str, ...], flag: str) -> str | None:
    if value is None:
        return None
    text = value.strip().lower()
    if text not in allowed:
        raise UsageError(f"{flag} {value}: expected one of {', '.join(allowed)}")
    return text


def _render(result) -> None:
    # deferred: rich.table is only needed once there are results to show
    from rich.table import Table

    from mlcli.model.table import show_costs  # deferred: imports numpy and the model package

    for note in result.notes:
        console.info(note)
    head = f"{result.checkpoint} on {result.data}: {result.rows:,} rows, {result.method}"
    if result.metric is not None:
        head += f"; {result.metric['name']} {result.metric['value']:.4f} unshuffled"
    console.info(head)
    if result.importance:
        table = Table(title=result.importance_measure, title_justify="left")
        for name in ("rank", "feature", "importance", "std"):
            table.add_column(name, justify="left" if name == "feature" else "right")
        for rank, row in enumerate(result.importance[:_SHOWN], 1):
            table.add_row(str(rank), str(row["feature"]), f"{row['mean']:.4f}", f"{row['std']:.4f}")
        console.show(table)
        if len(result.importance) > _SHOWN:
            console.info(f"... {len(result.importance) - _SHOWN} more feature(s) in --json")
    if result.attributions is not None:
        a = result.attributions
        console.info(f"integrated gradients: {len(a['rows'])} row(s), {a['steps']} steps, baseline {a['baseline']}; "
                     f"completeness: attributions add up to f(x) - f(baseline) within {a['max_gap']:.2g}")
    if result.activations:
        table = Table(title="layers: weights and activations on these rows", title_justify="left")
        for name in ("layer", "type", "weight mean", "weight std", "act. mean", "act. std", "zero outputs",
                     "dead units"):
            table.add_column(name, justify="left" if name in ("layer", "type") else "right")
        weights = _weights_by_layer(result.weights)
        for row in result.activations:
            w = weights.get(row["layer"])
            dead = f"{row['dead_units']}/{row['units']}" if "dead_units" in row else "-"
            table.add_row(row["layer"], row["type"], f"{w[0]:.4f}" if w else "-", f"{w[1]:.4f}" if w else "-",
                          f"{row['mean']:.4f}", f"{row['std']:.4f}", f"{row['zero_fraction']:.1%}", dead)
        console.show(table)
    if result.flops is not None:
        show_costs(result.flops)
    for what, path in result.files.items():
        console.info(f"{what}: {path}")


def _weights_by_layer(weights: list[dict]) -> dict[str, tuple[float, float]]:
    """The mean and std of each layer's kernel (its first weight)."""
    found: dict[str, tuple[float, float]] = {}
    for row in weights:
        found.setdefault(row["layer"], (row["mean"], row["std"]))
    return found
