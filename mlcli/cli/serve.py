"""`mlcli serve`: a checkpoint behind an HTTP endpoint in TensorFlow Serving's REST shape (docs/contract.md §9)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mlcli.cli.options import json_option, quiet_option, unsafe_option, verbose_option
from mlcli.settings import Settings, use_settings

MAX_BODY_MB = 10  # mlcli.serve.requests.MAX_BODY, in the unit people type


def serve(
    checkpoint: Path = typer.Argument(..., metavar="CKPT", help="A run directory or a .keras file.",
                                      show_default=False),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port to listen on (0: a free one)."),
    name: Optional[str] = typer.Option(None, "--name", help="The model's name in URLs (default: the run's name).",
                                       show_default=False),
    max_batch: int = typer.Option(64, "--max-batch", min=1, metavar="N",
                                  help="Rows per model call: concurrent requests are merged up to this."),
    batch_timeout_ms: float = typer.Option(2.0, "--batch-timeout-ms", min=0.0, metavar="T",
                                           help="How long a request waits for others to share its model call."),
    max_body: float = typer.Option(MAX_BODY_MB, "--max-body", min=0.001, metavar="MB",
                                   help="Largest request body in MB (1 MB = 2^20 bytes); larger ones get 413."),
    json_output: bool = json_option("Once listening, write {\"status\": \"serving\", \"url\", \"predict_url\", \"name\", "
                                    "\"checkpoint\"} to stdout (flushed at once: a script reads the address "
                                    "--port 0 picked); an error is the usual error document."),
    quiet: bool = quiet_option(),
    verbose: bool = verbose_option(),
    unsafe: bool = unsafe_option(),
) -> None:
    """Serve CKPT over HTTP: POST /v1/models/NAME:predict, status, metadata, /healthz, /metrics."""
    # deferred: the server imports uvicorn, FastAPI and TensorFlow only when it runs
    from mlcli.serve.server import serve as run_serve

    use_settings(Settings(quiet=quiet, json=json_output, verbose=verbose, unsafe=unsafe))
    if name is not None and (not name or any(c in name for c in "/:?#% ")):
        from mlcli.errors import UsageError  # deferred: only this error needs it

        raise UsageError(f"--name {name!r}: a model name goes in URLs — use letters, digits, '-', '_' or '.'")
    run_serve(checkpoint, host=host, port=port, name=name, max_batch=max_batch, batch_timeout_ms=batch_timeout_ms,
              max_body=int(max_body * 1024 * 1024), unsafe=unsafe)
