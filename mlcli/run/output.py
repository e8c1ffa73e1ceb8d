"""Which directory a new run writes: runs/<name> by default; an explicit --output is claimed, and a
run already there is replaced only with --force, and only once the new run is ready to write."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlcli import console
from mlcli.errors import UsageError
from mlcli.run.files import LOCK, RUN_FILES, RUN_FOLDERS, check_writable_folder, is_run, is_temporary, writing
from mlcli.run.lock import hold_lock


def default_run_dir(name: str, root: Path = Path("runs")) -> Path:
    """runs/<name>, or runs/<name>-2, -3, ... when taken; one that cannot be written is exit 2 at once."""
    candidate = root / name
    suffix = 2
    while candidate.exists():
        candidate = root / f"{name}-{suffix}"
        suffix += 1
    check_writable_folder(candidate, f"run directory {candidate}")
    return candidate


def claim_output(output: Path, force: bool) -> bool:
    """An explicit --output that holds a run is refused unless --force, which replaces it.

    Returns whether the old run must be removed: that happens only when the new run is about to write
    its first file (remove_replaced_run), so a new run that fails its checks leaves the old one whole.
    A place that cannot be written (a file in the way, a read-only disk) is refused before any work.
    """
    subject = f"--output {output}"
    with writing(subject):  # a name too long fails here already
        exists = output.exists()
    if exists and not output.is_dir():
        raise UsageError(f"{subject}: exists and is not a directory", hint="choose another --output")
    holds_run = exists and is_run(output)
    if holds_run and not force:
        raise UsageError(
            f"--output {output} already holds a run",
            hint="pass --force to replace it, --resume to continue it, or choose another --output",
        )
    # A run that died before its first file left only its lock: that directory is as good as empty.
    if exists and not holds_run and any(entry.name != LOCK for entry in output.iterdir()):
        raise UsageError(
            f"{subject}: is a non-empty directory that is not an mlcli run",
            hint="choose an empty or new directory; mlcli never deletes files it did not write",
        )
    check_writable_folder(output, subject)
    if holds_run:
        with hold_lock(output):
            pass  # refuse at once to replace a run that a live process is writing
    return holds_run


def remove_replaced_run(directory: Path) -> None:
    """--force: the old run's files go, now that the new run holds the lock and is about to write.

    Only what a run writes is removed (RUN_FILES, RUN_FOLDERS, a killed writer's temporary files); a file
    the user put there (notes.txt) stays, and is named on stderr.
    """
    kept = []
    for entry in sorted(directory.iterdir()):
        if entry.name == LOCK:
            continue
        with writing(entry):
            if entry.name in RUN_FOLDERS and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.name in RUN_FILES or is_temporary(entry):
                entry.unlink()
            else:
                kept.append(entry.name)
    if kept:
        console.info(f"--force: kept {len(kept)} file(s) mlcli did not write in {directory}: {', '.join(kept)}")
