"""`mlcli doctor`: what this machine offers mlcli, as a table or one JSON document."""

from __future__ import annotations

from mlcli import console
from mlcli.cli.options import json_option
from mlcli.doctor import report
from mlcli.settings import Settings, use_settings


def doctor(
    json_: bool = json_option(help="One JSON document on stdout."),
) -> None:
    """Versions, GPUs and a plain-words diagnosis of what TensorFlow can use."""
    use_settings(Settings(json=json_))
    facts = report()
    if json_:
        console.data_json(facts)
        return
    # deferred: rich.table is only needed for the human report
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
