"""The Typer app and its error boundary: the ONE place where known errors become a message and
an exit code (CONTRACT §2). Commands live in the sibling modules, each: typed arguments -> its
settings -> load config -> one pipeline call -> render; `mlcli.cli` registers them on this app.
Nothing here imports TensorFlow at module level.
"""

from __future__ import annotations

import atexit
import os
import sys
import traceback

import typer
from typer.core import TyperGroup

from mlcli import __version__, console
from mlcli.errors import MlcliError, filesystem_error
from mlcli.settings import command_scope


class _ErrorBoundary(TyperGroup):
    """Known errors -> short message on stderr + exit code; unknown ones keep their traceback. An
    OSError is known when it is a full disk or a named path the OS refused (mlcli.errors.filesystem_error).

    Each command runs in its own settings scope, and its error is rendered inside that scope: with the
    command's --quiet and --json, and none of them left over for the next command in this process.
    """

    def invoke(self, ctx: typer.Context):
        with command_scope():
            try:
                return super().invoke(ctx)
            except MlcliError as exc:
                _fail(exc)
            except OSError as exc:  # a path the OS refused that no stage named itself, or a full disk
                known = filesystem_error(exc)
                if known is None:
                    raise  # a bug: its traceback is the report
                _fail(known)
            except KeyboardInterrupt:
                console.error("interrupted")
                console.error_json({"status": "interrupted", "exit_code": 130})
                raise typer.Exit(130) from None


def _fail(exc: MlcliError) -> None:
    """The error's message on stderr (and its --json document on stdout), then its exit code."""
    if os.environ.get("MLCLI_DEBUG") == "1":
        traceback.print_exc()
    console.error(exc.render())
    console.error_json(exc.error_document())
    raise typer.Exit(exc.exit_code) from None


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
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Train, evaluate, fine-tune and serve Keras models described entirely in YAML."""


def main() -> None:
    """The `mlcli` command: run the app, then leave without TensorFlow's slow native teardown.

    Once TensorFlow is loaded, interpreter shutdown spends about a second tearing down its runtime.
    By then every file mlcli writes is closed and renamed into place, so the process runs its atexit
    handlers, flushes its streams and exits at once with the command's exit code. (In-process callers such
    as tests use `app` and are unaffected.)
    """
    try:
        app(prog_name="mlcli")
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if "tensorflow" not in sys.modules:
        raise SystemExit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    # atexit handlers still run (logging, TensorFlow's removal of its autograph temporary files);
    # only the native teardown after them is skipped.
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (mlcli predict ... | head): nothing left to say
            pass
    os._exit(code)

