"""The lock on a run directory: a second writer is refused; a dead process holds nothing."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from mlcli.errors import UsageError
from mlcli.run.files import LOCK, writing


@contextlib.contextmanager
def hold_lock(directory: Path) -> Iterator[None]:
    """An exclusive flock on DIR/.lock for the life of this process's work on DIR.

    The kernel releases a flock when its process dies, so a killed run never blocks the next one.
    """
    with writing(directory):  # the run directory's first write: a read-only or full disk shows here
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
        with writing(directory / LOCK):
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
        yield
    finally:
        handle.close()
