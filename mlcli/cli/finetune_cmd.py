"""`mlcli finetune`: train's options, plus --from CKPT (CONTRACT §1)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from mlcli.cli.app import SetOption, UnsafeOption, app
from mlcli.cli.train_cmds import (
    DeviceOption,
    FailOverOption,
    FailUnderOption,
    ForceOption,
    JsonOption,
    OutputOption,
    QuietOption,
    ResumeOption,
    SeedOption,
    VerboseOption,
    _run_training_command,
)


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
    output: Optional[Path] = OutputOption,
    set_: Optional[List[str]] = SetOption,
    resume: bool = ResumeOption,
    force: bool = ForceOption,
    device: Optional[str] = DeviceOption,
    seed: Optional[int] = SeedOption,
    json_: bool = JsonOption,
    quiet: bool = QuietOption,
    verbose: bool = VerboseOption,
    unsafe: bool = UnsafeOption,
    fail_under: Optional[List[str]] = FailUnderOption,
    fail_over: Optional[List[str]] = FailOverOption,
) -> None:
    """Fine-tune a trained model: freeze most of it, replace its head, train the rest on new data."""
    if resume and from_ is not None and config is not None and config.is_dir():
        from mlcli.errors import UsageError

        raise UsageError(f"--resume {config} continues from the parent recorded in its run.json; drop --from",
                         hint=f"mlcli finetune --resume {config}")
    _run_training_command("finetune", config, from_, output, set_ or [], resume, force, device, seed, json_,
                          quiet, verbose, fail_under, fail_over, unsafe=unsafe)
