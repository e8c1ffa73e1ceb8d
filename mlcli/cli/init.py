"""`mlcli init`: a commented starter config that trains as written. No TensorFlow."""

from __future__ import annotations

from pathlib import Path

import typer

from mlcli import console
from mlcli.cli.options import force_option, json_option, quiet_option
from mlcli.settings import Settings, use_settings


def init(
    directory: Path = typer.Argument(Path("."), metavar="DIR", help="Where to write the config (created if missing).",
                                     show_default="."),
    template: str = typer.Option("classification", "--template", "-t", metavar="classification|regression|finetune",
                                 help="classification (digits), regression (diabetes) or finetune (from a run)."),
    force: bool = force_option(help="Overwrite an existing file of the same name."),
    json_: bool = json_option(help='One JSON document on stdout: {"config", "template", "next_steps"}.'),
    quiet: bool = quiet_option(),
) -> None:
    """Write a commented starter config, DIR/<template>.yaml, that trains as written on bundled data."""
    # deferred: the starters import config (pydantic, yaml), too slow for `mlcli --help`
    from mlcli.config.starters import next_steps, write_starter

    use_settings(Settings(quiet=quiet, json=json_))
    name = template.strip().lower()
    path = write_starter(directory, name, force)
    steps = next_steps(path, name)
    if json_:
        console.data_json({"config": str(path), "template": name, "next_steps": steps})
    console.info(f"wrote {path}")
    for line in steps:
        console.info(f"  {line}")
