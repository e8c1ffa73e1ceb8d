"""The run directory's file names in one place, and atomic writes: a file is always complete.

Every write goes through `writing`, which turns the OS's refusal into one line naming the path and
the reason (exit 2 for a place that cannot be written, exit 7 for a full disk).

The MLCLI_TEST_KILL_AT fault point lives here too, since the crash-safety tests kill a process
between writing a temporary file and renaming it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import tempfile
from pathlib import Path
from typing import Any, Iterator

from mlcli.errors import UsageError, os_refusal, write_error

CONFIG = "config.yaml"
MODEL = "model.keras"
BEST = "best.keras"
LABELS = "labels.json"
HISTORY = "history.csv"
METRICS = "metrics.json"
RUN = "run.json"
LOGS = "logs"
STATE = "state"
LOCK = ".lock"
PLOTS = "plots"

# What a run writes at the top of its directory: `--force` removes these and nothing else. The
# folders hold only what mlcli puts there and go whole.
RUN_FILES = (CONFIG, MODEL, BEST, LABELS, HISTORY, METRICS, RUN)
RUN_FOLDERS = (LOGS, STATE, PLOTS)

STATE_PROGRESS = "progress.json"  # inside state/: epoch, callback states


def is_run(directory: Path) -> bool:
    return (directory / RUN).is_file() or (directory / CONFIG).is_file()


# ---- where a write may go, and what it does when the OS refuses -----------------------------------

@contextlib.contextmanager
def writing(subject: str | os.PathLike) -> Iterator[None]:
    """The OS refusing a write inside the block (an OSError, or TensorFlow's error saying so) becomes
    the MlcliError naming `subject` (a path, or e.g. "--output out.csv") and the OS's reason: exit 7
    for a full disk, exit 2 for any other refusal."""
    try:
        yield
    except BrokenPipeError:
        raise  # the reader of stdout left (mlcli predict ... | head): not a place that refused a write
    except Exception as exc:
        refused = os_refusal(exc)
        if refused is None:
            raise
        raise write_error(refused, subject) from exc


def check_writable_folder(folder: Path, subject: str) -> None:
    """Refuse at once (exit 2), before any work, a folder that cannot be written or created: a file
    where a folder is needed, a name too long, a read-only or unwritable folder. Creates nothing."""
    try:
        existing = folder
        while not existing.exists():  # the nearest folder that is there is where the first mkdir writes
            existing = existing.parent
        if not existing.is_dir():
            raise UsageError(f"{subject}: cannot write there ({os.path.abspath(existing)} is a file, not a folder)",
                             hint="choose a path whose folders are folders")
        longest = os.pathconf(existing, "PC_NAME_MAX")
    except OSError as exc:  # e.g. a name too long
        raise write_error(exc, subject) from None
    where = os.path.abspath(existing)
    if any(len(os.fsencode(name)) > longest for name in folder.parts[len(existing.parts):]):
        raise UsageError(f"{subject}: cannot write there ({os.strerror(errno.ENAMETOOLONG)}: a name in it is longer "
                         f"than the {longest} bytes {where} allows)", hint="choose a shorter name")
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        reason = os.strerror(errno.EROFS if read_only else errno.EACCES)
        raise UsageError(f"{subject}: cannot write there ({where}: {reason})",
                         hint="choose a place this user can write to")


# ---- the fault point of the crash-safety tests ----------------------------------------------------

KILL_AT = "MLCLI_TEST_KILL_AT"
FAULT_POINTS = ("before-rename", "state-before-progress")


def kill_at() -> tuple[str, int] | None:
    """MLCLI_TEST_KILL_AT as (point, N); None when unset. A malformed value is exit 2 at the first
    write: a typo would otherwise crash every write, or never kill and let a crash-safety test pass
    without a crash."""
    spec = os.environ.get(KILL_AT)
    if not spec:
        return None
    match = re.fullmatch(r"([a-z-]+)(?::([0-9]+))?", spec)
    if match is None or match.group(1) not in FAULT_POINTS or int(match.group(2) or 1) < 1:
        raise UsageError(
            f"{KILL_AT}={spec!r}: expected NAME or NAME:N — NAME one of {', '.join(FAULT_POINTS)}, N a whole "
            "number from 1 (the process kills itself the Nth time it reaches NAME)",
            hint=f"unset {KILL_AT}: it is for mlcli's crash-safety tests",
        )
    return match.group(1), int(match.group(2) or 1)


def fault_point(name: str) -> None:
    """Crash-safety tests only: MLCLI_TEST_KILL_AT=NAME[:N] kills this process with SIGKILL the Nth
    time it reaches NAME (e.g. between writing a temporary file and renaming it)."""
    point = kill_at()
    if point is None or point[0] != name:
        return
    remaining = point[1] - 1
    if remaining <= 0:

        os.kill(os.getpid(), signal.SIGKILL)
    os.environ[KILL_AT] = f"{name}:{remaining}"


# ---- atomic writes: a file is always complete, from its old or its new version -------------------

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; a run directory's files are as readable as any file the user writes.
_FILE_MODE = 0o666 & ~_umask()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def replacing(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; once the block has written it, fsync and rename it
    over `path`. On any failure the temporary file is removed and `path` is left as it was.
    (Keras insists that the temporary name of a model ends in .keras, hence `suffix`.)"""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        with writing(path):  # the block's own writes too: a full disk shows while it writes
            yield tmp
            os.chmod(tmp, _FILE_MODE)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            fault_point("before-rename")
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def write_json(path: Path, document: Any) -> None:
    write_text(path, json_text(document))


def json_text(document: Any) -> str:
    """A JSON file's text as mlcli writes them: indented, numpy values as plain numbers."""
    return json.dumps(document, indent=2, default=_plain) + "\n"


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def is_temporary(path: Path) -> bool:
    """A temporary file of an atomic write (.model.keras.x1y2.keras), which a killed writer can leave."""
    return path.name.startswith(".") and path.name != LOCK and path.suffix in (".tmp", ".keras") and path.is_file()


def remove_temporaries(run_dir: Path) -> None:
    """Temporary files a killed writer left behind (never renamed into place, so never read)."""
    for folder in (run_dir, run_dir / STATE):
        if folder.is_dir():
            for path in folder.glob(".*"):
                if is_temporary(path):
                    path.unlink(missing_ok=True)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
