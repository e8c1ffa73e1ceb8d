"""NumPy .npz archives: named arrays (features x, labels y by default), read whole, never with pickle.

What an archive holds is known before any array is read: each array's header declares its shape
and dtype (np.load allocates that much), and the zip directory declares each member's size (a
compressed member of zeros is a thousandth of its size on disk).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from mlcli import limits
from mlcli.errors import DataError, first_line

NAME = "npz"
TABULAR = False  # arrays by name, not a table of columns: read whole, sliced into batches by the reader
TOO_BIG_HINT = ("an .npz file is read whole: save the data as Parquet (or CSV) shards and stream them "
                f"(data.stream: true); if the machine has the memory, set {limits.MEMORY_LIMIT_VAR} to what mlcli may use")


def read_arrays(path: Path, role: str) -> dict[str, np.ndarray]:
    """All arrays of an .npz file, when what their headers declare fits in memory; object arrays
    (pickles) are refused, never loaded."""
    limits.fits(declared(path, role, 0), f"{role}: {path}", hint=TOO_BIG_HINT)
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


def declared(path: Path, role: str, up_to: int) -> limits.Declared:
    """The arrays' size from their headers, no data read (`up_to` is for formats that count); a
    member that is not an array (np.load reads it as bytes) by its size in the zip directory.
    Reading it whole also makes float32 features of the largest array: 4 bytes a value more."""
    if not _is_zip(path):
        # An .npz is a zip archive; np.load would take anything else for a .npy or a pickle.
        kind = "a single .npy array" if _starts_with(path, b"\x93NUMPY") else "not a zip archive"
        raise DataError(
            f"{role}: {path}: not a valid .npz file ({kind}) — expected arrays saved with np.savez(path, x=..., y=...)"
        )
    data = largest = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    data += info.file_size
                    continue
                with archive.open(info) as member:
                    shape, dtype, header = _array_header(member)
                count = int(np.prod(shape, dtype=object))  # Python ints: a hostile shape cannot overflow
                size = count * dtype.itemsize
                if not dtype.hasobject and header + size != info.file_size:
                    raise DataError(
                        f"{role}: {path}: array {info.filename[:-4]!r} declares shape {shape} of {dtype} "
                        f"({limits.size_text(size)}) but its member holds {limits.size_text(info.file_size - header)} "
                        "— the file is damaged or was not written by NumPy"
                    )
                data += size
                largest = max(largest, count)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{role}: {path}: not a valid .npz file ({first_line(exc)})") from None
    return limits.Declared(data, data + 4 * largest)


def _array_header(member) -> tuple[tuple, np.dtype, int]:
    """(shape, dtype, header length) of a .npy member, from its first bytes."""
    version = np.lib.format.read_magic(member)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(member)
    return shape, dtype, member.tell()


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
