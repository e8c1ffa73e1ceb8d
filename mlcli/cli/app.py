"""The Typer app and its error boundary: the ONE place where known errors become a message and
an exit code (docs/contract.md §2). Commands live in the sibling modules, each: typed arguments -> its
settings -> load config -> one pipeline call -> render; `mlcli.cli` registers them on this app.
Nothing here imports TensorFlow at module level.
"""

from __future__ import annotations

import atexit
import errno
import os
import sys
import traceback

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from mlcli import __version__, console
from mlcli.errors import MlcliError, UsageError, filesystem_error, first_line
from mlcli.settings import Settings, command_scope, use_settings

_ARGS = "mlcli.args"  # the command line's arguments, kept in the context for the error boundary


class _ErrorBoundary(TyperGroup):
    """Known errors -> short message on stderr + exit code; unknown ones keep their traceback. An
    OSError is known when it is a full disk or a named path the OS refused (mlcli.errors.filesystem_error).

    Each command runs in its own settings scope, and its error is rendered inside that scope: with the
    command's --quiet and --json, and none of them left over for the next command in this process.
    With --json, stdout holds one JSON document whatever ends the command: its own result, a known
    error, an argument error that the parser raises before the command runs, or a bug.
    """

    def make_context(self, info_name, args, parent=None, **extra):
        arguments = list(args)
        try:
            ctx = super().make_context(info_name, args, parent, **extra)
        except typer.TyperException as exc:  # `mlcli --bogus --json`: before any command is chosen
            with command_scope():
                _argument_error_json(exc, arguments)
            raise
        ctx.meta[_ARGS] = arguments
        return ctx

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
            except typer.TyperException as exc:
                # A bad flag or value (`--bogus`, `--seed abc`, a missing `--format`): Typer shows the
                # message on stderr and exits 2 once this returns; --json also gets the document.
                _argument_error_json(exc, ctx.meta.get(_ARGS, []))
                raise
            except (typer.Exit, typer.Abort):
                raise
            except Exception as exc:
                # A bug (exit 1): Python prints the traceback once this returns; --json also gets the document.
                if not (isinstance(exc, OSError) and exc.errno == errno.EPIPE):  # a closed stdout takes no document
                    console.error_json(_bug_document(exc))
                raise


def _argument_error_json(exc: typer.TyperException, arguments: list[str]) -> None:
    """The error document of an argument error, when the command line asked for --json."""
    given = arguments[: arguments.index("--")] if "--" in arguments else arguments
    if "--json" not in given:
        return
    command = getattr(getattr(exc, "ctx", None), "command_path", None)
    hint = f"{command} --help lists what it takes" if command else None
    use_settings(Settings(json=True))
    console.error_json({**UsageError(exc.format_message(), hint).error_document(), "exit_code": exc.exit_code})


def _bug_document(exc: Exception) -> dict:
    return {"status": "error", "exit_code": 1, "error": "internal error",
            "message": f"{type(exc).__name__}: {first_line(exc)}",
            "hint": "this is a bug in mlcli; the traceback is on stderr — please report it with the command line"}


class Command(TyperCommand):
    """A command whose usage line names its arguments as the contract writes them: `CKPT`, and `[DIR]`
    when optional (Typer's own line reads `{CKPT}` and `[[DIR]]`)."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or param.name.upper()
                name = name if param.required else f"[{name}]"
                pieces.append(name if param.nargs == 1 else f"{name}...")
        return pieces


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

