"""NumPy .npz archives: named arrays (features x, labels y by default), read whole, never with pickle."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from mlcli.errors import DataError

NAME = "npz"
TABULAR = False  # arrays by name, not a table of columns: read whole, sliced into batches by the reader


def read_arrays(path: Path, role: str) -> dict[str, np.ndarray]:
    """All arrays of an .npz file; object arrays (pickles) are refused, never loaded."""
    if not _is_zip(path):
        # An .npz is a zip archive; np.load would take anything else for a .npy or a pickle.
        kind = "a single .npy array" if _starts_with(path, b"\x93NUMPY") else "not a zip archive"
        raise DataError(
            f"{role}: {path}: not a valid .npz file ({kind}) — expected arrays saved with np.savez(path, x=..., y=...)"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataError(
                f"{role}: {path}: holds Python objects (pickled arrays), which mlcli never loads — "
                "save plain numeric arrays (np.savez with numbers or strings)"
            ) from None
        raise DataError(f"{role}: {path}: not a valid .npz file ({exc})") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{role}: {path}: not a valid .npz file ({exc})") from None


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(magic)) == magic
    except OSError:
        return False
