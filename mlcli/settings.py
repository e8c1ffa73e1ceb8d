"""What the running command was asked for (--quiet, --json, --verbose, --unsafe), as one frozen object.

console and runtime read `active_settings()`; nothing sets them but the CLI. The CLI's error boundary
opens a `command_scope()` around each command: the command starts at the defaults, makes its own
settings active with `use_settings`, and everything it set is undone when the scope closes, error or
not. So two commands run in one process (tests, notebooks) never see each other's flags, and the
boundary, which renders the command's error inside the scope, still sees that it was given --json.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    quiet: bool = False  # nothing on stderr but errors
    json: bool = False  # exactly one JSON document on stdout, whatever the exit code
    verbose: bool = False  # TensorFlow's own log lines are shown
    unsafe: bool = False  # Keras may run Python code stored in a model file


_settings: ContextVar[Settings] = ContextVar("mlcli_settings", default=Settings())  # noqa: B039 — frozen
# The command's one JSON document is on stdout: an error after it must not write a second one.
_json_written: ContextVar[bool] = ContextVar("mlcli_json_written", default=False)


def active_settings() -> Settings:
    """The running command's settings; the defaults outside a command (library use)."""
    return _settings.get()


def use_settings(settings: Settings) -> None:
    """Make a command's settings, built from its flags, active until its scope closes."""
    _settings.set(settings)


def json_written() -> bool:
    return _json_written.get()


def note_json_written() -> None:
    _json_written.set(True)


@contextlib.contextmanager
def command_scope() -> Iterator[None]:
    """One command's run: the defaults on entry; on exit, error paths included, what it set is undone."""
    settings_token = _settings.set(Settings())
    written_token = _json_written.set(False)
    try:
        yield
    finally:
        _json_written.reset(written_token)
        _settings.reset(settings_token)
