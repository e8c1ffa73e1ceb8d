"""Known errors and their exit codes (docs/contract.md §2).

Everything a user can cause raises one of these; the CLI turns them into a short message on
stderr and the exit code. Anything else is a bug and keeps its traceback (exit 1).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type), for one-line error messages."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class MlcliError(Exception):
    """Base of every error a user can cause: message on stderr, no traceback."""

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"{self.kind}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def error_document(self) -> dict:
        """What --json puts on stdout when the command fails with this error."""
        return {"status": "error", "exit_code": self.exit_code, "error": self.kind, "message": self.message,
                "hint": self.hint}


class UsageError(MlcliError):
    """A bad flag, flag combination or run-directory conflict."""

    exit_code = 2
    kind = "usage error"


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a config, located as precisely as the source allows."""

    path: str  # dotted key path, e.g. "training.epochs" or "model.layers.2.units"
    message: str  # "what is wrong — what was expected", fix included where obvious
    source: str | None = None  # file name, or "--set KEY=VALUE"
    line: int | None = None

    def render(self) -> str:
        where = self.source or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        path = f" {self.path}:" if self.path else ""
        return f"{where}:{path} {self.message}"


class ConfigError(MlcliError):
    """Every problem of a config, reported at once."""

    exit_code = 2
    kind = "config error"

    def __init__(self, problems: list[ConfigProblem] | ConfigProblem | str, hint: str | None = None):
        if isinstance(problems, str):
            problems = [ConfigProblem(path="", message=problems)]
        elif isinstance(problems, ConfigProblem):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(p.render() for p in self.problems), hint)

    def error_document(self) -> dict:
        return {**super().error_document(), "problems": [
            {"source": p.source, "line": p.line, "key": p.path, "message": p.message} for p in self.problems]}

    def render(self) -> str:
        count = len(self.problems)
        head = "config error:" if count == 1 else f"config error: {count} problems:"
        lines = [head] + ["  " + p.render() for p in self.problems]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class DataError(MlcliError):
    """Missing file, bad column, non-numeric value, NaN/inf, unknown label, shape mismatch."""

    exit_code = 3
    kind = "data error"


class DeviceError(MlcliError):
    """A GPU was required and none is usable."""

    exit_code = 4
    kind = "device error"


class ClusterError(DeviceError):
    """multi_worker: the workers in TF_CONFIG could not reach each other in time (exit 4, like a
    missing GPU: the hardware the run asked for is not there)."""

    kind = "cluster error"


class AddressError(DeviceError):
    """mlcli serve: the address cannot be listened on — the port is taken, privileged, or the host is not
    this machine's (exit 4, like a missing GPU: the environment, not the command, is what must change)."""

    kind = "address error"


class GateFailed(MlcliError):
    """A --fail-under / --fail-over gate failed; everything was still saved."""

    exit_code = 5
    kind = "gate failed"


class Diverged(MlcliError):
    """Loss became NaN or inf; the last good state is kept."""

    exit_code = 6
    kind = "diverged"


class StorageError(MlcliError):
    """The disk filled up, a quota ran out or the storage failed while writing: not the user's
    command or data. What was written before is intact; free space and run the command again."""

    exit_code = 7
    kind = "storage error"


# The storage ran out or failed: the same command works once there is room (exit 7). Any other
# OSError while writing means the place itself cannot be written (exit 2).
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})
# What a place that cannot be written answers: read-only, not a directory, a name too long, no permission.
_PLACE_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
                           errno.ENAMETOOLONG, errno.ELOOP, errno.EEXIST})
_FREE_SPACE = "free space on that disk (or write somewhere else) and run the command again"


def write_error(exc: OSError, subject: str | os.PathLike) -> MlcliError:
    """An OSError met while writing `subject` (a path, or e.g. "--output out.csv"), as one line
    naming it and the OS's reason: StorageError (exit 7) for a full disk, else UsageError (exit 2)."""
    reason = exc.strerror or first_line(exc)
    if exc.errno in _STORAGE_ERRNOS:
        return StorageError(f"{subject}: writing failed ({reason})", hint=_FREE_SPACE)
    return UsageError(f"{subject}: cannot write there ({reason})", hint="choose a place this user can write to")


def os_refusal(exc: BaseException) -> OSError | None:
    """The OS's refusal behind an exception: an OSError, or one of TensorFlow's own errors, which carry
    only its text (ResourceExhaustedError: "... No space left on device [Op:SaveV2]"); else None."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, MlcliError) or not isinstance(exc, Exception):
        return None  # already said in mlcli's words; or not an error (KeyboardInterrupt)
    text = str(exc)
    code = next((c for c in (*sorted(_STORAGE_ERRNOS), errno.EROFS, errno.EACCES) if os.strerror(c) in text), None)
    return OSError(code, os.strerror(code)) if code is not None else None


def filesystem_error(exc: OSError) -> MlcliError | None:
    """The error boundary's last resort for an OSError no stage translated: a full disk anywhere, or a
    named path the OS refused; None for anything else (a bug, which keeps its traceback)."""
    reason = exc.strerror or first_line(exc)
    if exc.errno in _STORAGE_ERRNOS:
        return StorageError(f"{exc.filename or 'a file'}: {reason}", hint=_FREE_SPACE)
    if exc.errno in _PLACE_ERRNOS and exc.filename:
        return UsageError(f"{exc.filename}: {reason}")
    return None


class Interrupted(MlcliError):
    """Ctrl-C or SIGTERM; state saved, --resume continues."""

    exit_code = 130
    kind = "interrupted"
