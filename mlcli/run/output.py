"""Which directory a new run writes: runs/<name> by default; an explicit --output is claimed, and a
run already there is replaced only with --force, and only once the new run is ready to write."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlcli.errors import UsageError
from mlcli.run.files import LOCK, is_run
from mlcli.run.lock import hold_lock


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
