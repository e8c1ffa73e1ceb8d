"""The Typer app: typed arguments -> load config -> one pipeline call -> render.

This is the ONE place where known errors become a message and an exit code (CONTRACT §2).
Nothing here imports TensorFlow at module level: `mlcli --help` and `validate` stay fast.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup

from mlcli import __version__, console
from mlcli.errors import MlcliError


class _ErrorBoundary(TyperGroup):
    """Known errors -> short message on stderr + exit code; unknown ones keep their traceback."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except MlcliError as exc:
            if os.environ.get("MLCLI_DEBUG") == "1":
                traceback.print_exc()
            console.error(exc.render())
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            console.error("interrupted")
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_ErrorBoundary,
    name="mlcli",
    help="Train, evaluate, fine-tune and serve Keras models described entirely in YAML.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # a bug shows Python's plain traceback (exit 1)
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        console.data_text(f"mlcli {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Train, evaluate, fine-tune and serve Keras models described entirely in YAML."""


SetOption = typer.Option(
    None, "--set", metavar="KEY=VALUE",
    help="Override a config key: dotted path, YAML-typed value (e.g. training.epochs=3).",
)


@app.command()
def validate(
    config: Path = typer.Argument(..., help="The YAML config to check.", show_default=False),
    set_: Optional[List[str]] = SetOption,
    print_: bool = typer.Option(False, "--print", help="Write the resolved config to stdout as YAML."),
    deep: bool = typer.Option(
        False, "--deep", help="Also resolve every Keras name and build the model on the data's shape (imports TensorFlow)."
    ),
) -> None:
    """Check a config without training: every problem at once, with file and line."""
    from mlcli.config import check_config, load_config, to_dict
    from mlcli.config.yamlio import dump_yaml

    loaded = load_config(config, set_ or [])
    check_config(loaded)
    if deep:
        from mlcli.validate_deep import validate_deep

        summary = validate_deep(loaded)
        console.info(summary)
    if print_:
        console.data_text(dump_yaml(to_dict(loaded.config)))
    c = loaded.config
    console.info(
        f"{config}: valid — {len(c.model.layers)} layer(s), loss {c.loss if isinstance(c.loss, str) else c.loss.type}, "
        f"{c.training.epochs} epoch(s), data {c.data.train}"
    )


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
