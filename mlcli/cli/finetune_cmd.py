"""`mlcli finetune`: train's options, plus --from CKPT (CONTRACT §1)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from mlcli.cli.app import SetOption, app
from mlcli.cli.train_cmds import _run_training_command


@app.command()
def finetune(
    config: Optional[Path] = typer.Argument(
        None, show_default=False,
        help="Optional YAML laid over the parent run's config (no model: section); "
             "with --resume, a finetune run directory to continue.",
    ),
    from_: Optional[Path] = typer.Option(
        None, "--from", metavar="CKPT", show_default=False,
        help="The parent checkpoint: a run directory (its model.keras) or a .keras file.",
    ),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run directory (default runs/<name>)."),
    set_: Optional[List[str]] = SetOption,
    resume: bool = typer.Option(False, "--resume", help="Continue an unfinished run (idempotent)."),
    force: bool = typer.Option(False, "--force", help="Replace a run already in --output."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | gpu | gpu:0,1"),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override the config's seed."),
    json_: bool = typer.Option(False, "--json", help="One JSON document on stdout; human output on stderr."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Nothing on stderr but errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show TensorFlow's own log lines."),
    fail_under: Optional[List[str]] = typer.Option(None, "--fail-under", metavar="METRIC=VALUE",
                                                   help="Exit 5 if METRIC ends below VALUE."),
    fail_over: Optional[List[str]] = typer.Option(None, "--fail-over", metavar="METRIC=VALUE",
                                                  help="Exit 5 if METRIC ends above VALUE."),
) -> None:
    """Fine-tune a trained model: freeze most of it, replace its head, train the rest on new data."""
    if resume and from_ is not None and config is not None and config.is_dir():
        from mlcli.errors import UsageError

        raise UsageError(f"--resume {config} continues from the parent recorded in its run.json; drop --from",
                         hint=f"mlcli finetune --resume {config}")
    _run_training_command("finetune", config, from_, output, set_ or [], resume, force, device, seed, json_,
                          quiet, verbose, fail_under, fail_over)
