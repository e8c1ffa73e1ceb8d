"""The run directory (CONTRACT §4): file names in one place, atomic writes, the manifest, the lock."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from mlcli.errors import UsageError

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


def default_run_dir(name: str, root: Path = Path("runs")) -> Path:
    """runs/<name>, or runs/<name>-2, -3, ... when taken."""
    candidate = root / name
    suffix = 2
    while candidate.exists():
        candidate = root / f"{name}-{suffix}"
        suffix += 1
    return candidate


def claim_output(output: Path, force: bool) -> bool:
    """An explicit --output that holds a run is refused unless --force, which replaces it.

    Returns whether the old run must be removed: that happens only when the new run is about to write
    its first file (remove_replaced_run), so a new run that fails its checks leaves the old one whole.
    """
    if not output.exists():
        return False
    if not output.is_dir():
        raise UsageError(f"--output {output}: exists and is not a directory", hint="choose another --output")
    if is_run(output):
        if not force:
            raise UsageError(
                f"--output {output} already holds a run",
                hint="pass --force to replace it, --resume to continue it, or choose another --output",
            )
        with hold_lock(output):
            pass  # refuse at once to replace a run that a live process is writing
        return True
    if any(output.iterdir()):
        raise UsageError(
            f"--output {output}: is a non-empty directory that is not an mlcli run",
            hint="choose an empty or new directory; mlcli never deletes files it did not write",
        )
    return False


def remove_replaced_run(directory: Path) -> None:
    """--force: the old run's files go, now that the new run holds the lock and is about to write."""
    for entry in directory.iterdir():
        if entry.name == LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


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


ARCHIVE_FACTS = "mlcli.json"  # inside a .keras archive: what the model's inputs and outputs mean


def model_facts(prepared) -> dict:
    """What a .keras file needs to be used away from its run directory: the input columns in model
    order, the label column(s) and the class vocabulary in output order (as run.json records them)."""
    return {"task": prepared.task, "features": prepared.feature_names, "labels": prepared.label_names,
            "classes": prepared.classes}


def save_model(model, path: Path, facts: dict | None = None) -> None:
    """model.save to a temporary .keras name in the same directory, then rename over `path`.

    `facts` go into the archive as one more member, mlcli.json, which Keras's loader ignores: a
    model.keras copied out of its run still predicts by column name and in the original labels."""
    import zipfile

    with replacing(path, suffix=".keras") as tmp:
        model.save(tmp)
        if facts is not None:
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(ARCHIVE_FACTS, json.dumps(facts, default=str))


def write_history(path: Path, rows: list[dict]) -> None:
    """history.csv: one row per finished epoch, rewritten atomically so a kill never truncates it."""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    write_text(path, buffer.getvalue())


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # shortest exact round-trip
    return "" if value is None else value


def read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        rows = []
        for row in csv.DictReader(handle):
            rows.append({k: _parse_number(v) for k, v in row.items()})
        return rows


def _parse_number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


# ---- the lock: a second writer is refused; a dead process holds nothing -------------------------

@contextlib.contextmanager
def hold_lock(directory: Path) -> Iterator[None]:
    """An exclusive flock on DIR/.lock for the life of this process's work on DIR.

    The kernel releases a flock when its process dies, so a killed run never blocks the next one.
    """
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / LOCK, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UsageError(
                f"{directory} is in use by a live run ({holder})",
                hint="wait for it to finish, or write to another --output",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()
