"""The only module that prints. stdout is for data, stderr is for people.

`--quiet` leaves nothing on stderr but errors; `--json` sends all human output to stderr and
exactly one JSON document to stdout. Both are the running command's settings (mlcli.settings).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console

from mlcli.settings import active_settings, json_written, note_json_written

_stderr: Console | None = None


def stderr() -> Console:
    """Rich console on stderr. Plain text (no ANSI) when stderr is not a terminal or NO_COLOR is set."""
    global _stderr
    if _stderr is None:
        _stderr = Console(
            stderr=True,
            highlight=False,
            soft_wrap=True,
            no_color=bool(os.environ.get("NO_COLOR")),
        )
    return _stderr


def is_terminal() -> bool:
    return stderr().is_terminal


def error_json(document: Any) -> None:
    """A command given --json that fails before writing its document writes this one instead, so
    stdout still holds exactly one JSON document."""
    if active_settings().json and not json_written():
        data_json(document)


def quiet() -> bool:
    return active_settings().quiet


def info(message: str = "", *, markup: bool = False) -> None:
    """A line for people, on stderr; nothing with --quiet."""
    if not quiet():
        stderr().print(message, markup=markup)


def show(renderable: Any) -> None:
    """A Rich table or other renderable, on stderr; nothing with --quiet."""
    if not quiet():
        stderr().print(renderable)


def error(message: str) -> None:
    """Errors are shown even with --quiet."""
    stderr().print(message, markup=False, style="red" if stderr().is_terminal else None)


def data_text(text: str) -> None:
    """Data on stdout, unchanged."""
    sys.stdout.write(text)
    if not text.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()


def data_bytes(data: bytes) -> None:
    """Binary data on stdout (predictions streamed batch by batch), after any pending text."""
    sys.stdout.flush()
    stream = getattr(sys.stdout, "buffer", None)
    if stream is None:  # a text-only stdout (some test harnesses): data is UTF-8 text anyway
        sys.stdout.write(data.decode("utf-8"))
        sys.stdout.flush()
        return
    view = memoryview(data)
    while view:  # a raw stdout (PYTHONUNBUFFERED=1) may take part of it; the rest raises if the disk is full
        view = view[stream.write(view) or 0:]
    stream.flush()


def data_json(document: Any) -> None:
    """Exactly one JSON document on stdout."""
    note_json_written()
    sys.stdout.write(json.dumps(document, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(value: Any) -> Any:
    # numpy scalars and paths reach here; keep the dependency out of this module.
    if hasattr(value, "item"):
        return value.item()
    return str(value)
