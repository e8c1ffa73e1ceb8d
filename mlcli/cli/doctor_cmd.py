"""`mlcli doctor`."""

from __future__ import annotations

import typer

from mlcli import console
from mlcli.cli.app import app


@app.command()
def doctor(
    json_: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Versions, GPUs and a plain-words diagnosis of what TensorFlow can use."""
    from mlcli.doctor import report

    facts = report()
    if json_:
        console.data_json(facts)
        return
    from rich.table import Table

    table = Table(title="mlcli doctor", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for key in ("mlcli", "python", "platform", "tensorflow", "keras", "built_with_cuda"):
        table.add_row(key, str(facts[key]))
    gpus = ", ".join(f"{g['name']} ({g['model']}, cc {g['compute_capability']})" for g in facts["gpus"])
    table.add_row("gpus", gpus or "none")
    table.add_row("nvidia-smi", facts["nvidia_smi"] or "not found")
    table.add_row("diagnosis", facts["diagnosis"])
    console.stderr().print(table)
