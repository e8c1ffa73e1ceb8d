"""`mlcli schema` and `mlcli init`: editor support and starter configs. Neither imports TensorFlow."""

from __future__ import annotations

from pathlib import Path

import typer

from mlcli import console
from mlcli.cli.app import app


@app.command()
def schema() -> None:
    """Print the config's JSON Schema, for editors (see README: Editor support)."""
    from mlcli.config.reference import editor_schema

    console.data_json(editor_schema())


@app.command()
def init(
    directory: Path = typer.Argument(Path("."), metavar="[DIR]", help="Where to write the config (created if missing).",
                                     show_default="."),
    template: str = typer.Option("classification", "--template", "-t", metavar="classification|regression|finetune",
                                 help="classification (digits), regression (diabetes) or finetune (from a run)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file of the same name."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Nothing on stderr but errors."),
) -> None:
    """Write a commented starter config, DIR/<template>.yaml, that trains as written on bundled data."""
    from mlcli.config.starters import next_steps, write_starter

    console.set_quiet(quiet)

    name = template.strip().lower()
    path = write_starter(directory, name, force)
    console.info(f"wrote {path}")
    for line in next_steps(path, name):
        console.info(f"  {line}")
