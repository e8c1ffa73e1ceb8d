"""The run directory's file names in one place, and atomic writes: a file is always complete.

The MLCLI_TEST_KILL_AT fault point lives here too, since the crash-safety tests kill a process
between writing a temporary file and renaming it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

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

STATE_PROGRESS = "progress.json"  # inside state/: epoch, callback states


def is_run(directory: Path) -> bool:
    return (directory / RUN).is_file() or (directory / CONFIG).is_file()


# ---- atomic writes: a file is always complete, from its old or its new version -------------------

def fault_point(name: str) -> None:
    """Crash-safety tests only: MLCLI_TEST_KILL_AT=NAME[:N] kills this process with SIGKILL the Nth
    time it reaches NAME (e.g. between writing a temporary file and renaming it)."""
    spec = os.environ.get("MLCLI_TEST_KILL_AT")
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    remaining = int(count or 1) - 1
    os.environ["MLCLI_TEST_KILL_AT"] = f"{point}:{remaining}"
    if remaining <= 0:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
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
    write_text(path, json.dumps(document, indent=2, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def remove_temporaries(run_dir: Path) -> None:
    """Temporary files a killed writer left behind (never renamed into place, so never read)."""
    for folder in (run_dir, run_dir / STATE):
        if folder.is_dir():
            for path in folder.glob(".*"):
                if path.is_file() and path.name != LOCK and path.suffix in (".tmp", ".keras"):
                    path.unlink(missing_ok=True)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
