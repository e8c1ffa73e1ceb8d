"""The command line. `mlcli.cli:app` is the entry point; importing it registers every command."""

from mlcli.cli import config_cmds, doctor_cmd, eval_cmds, export_cmd, finetune_cmd, starter_cmds, train_cmds  # noqa: F401  (registers the commands)
from mlcli.cli.app import app, main

__all__ = ["app", "main"]
