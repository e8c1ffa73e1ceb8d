"""`mlcli finetune`: train's options, plus --from CKPT (docs/contract.md §1)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from mlcli.cli.options import (
    device_option,
    fail_over_option,
    fail_under_option,
    force_option,
    json_option,
    output_option,
    progress_every_option,
    quiet_option,
    resume_option,
    seed_option,
    set_option,
    unsafe_option,
    verbose_option,
)
from mlcli.cli.train import run_training
from mlcli.errors import UsageError
from mlcli.settings import Settings, use_settings


def finetune(
    config: Optional[Path] = typer.Argument(
        None, metavar="CONFIG", show_default=False,
        help="Optional YAML laid over the parent run's config (no model: section); "
             "with --resume, a finetune run directory to continue.",
    ),
    from_: Optional[Path] = typer.Option(
        None, "--from", metavar="CKPT", show_default=False,
        help="The parent checkpoint: a run directory (its model.keras) or a .keras file.",
    ),
    output: Optional[Path] = output_option(),
    set_: Optional[List[str]] = set_option(),
    resume: bool = resume_option(),
    force: bool = force_option(),
    device: Optional[str] = device_option(),
    seed: Optional[int] = seed_option(),
    json_: bool = json_option(),
    quiet: bool = quiet_option(),
    verbose: bool = verbose_option(),
    unsafe: bool = unsafe_option(),
    fail_under: Optional[List[str]] = fail_under_option(),
    fail_over: Optional[List[str]] = fail_over_option(),
    progress_every: Optional[float] = progress_every_option(),
) -> None:
    """Fine-tune a trained model: freeze most of it, replace its head, train the rest on new data."""
    use_settings(Settings(quiet=quiet, json=json_, verbose=verbose, unsafe=unsafe))
    if resume and from_ is not None and config is not None and config.is_dir():
        raise UsageError(f"--resume {config} continues from the parent recorded in its run.json; drop --from",
                         hint=f"mlcli finetune --resume {config}")
    run_training("finetune", config, from_, output, set_ or [], resume, force, device, seed, json_,
                 fail_under, fail_over, progress_every)
