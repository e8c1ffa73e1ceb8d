"""Where data comes from: files (.csv .parquet .npz) and the bundled `builtin:NAME[/SPLIT]` sets.

Reading is done by pyarrow (fast, multi-threaded CSV and Parquet) and numpy (npz, never with
pickle). Every problem is a DataError naming the file and what was expected.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from mlcli.errors import DataError

BUILTIN_SETS = {"digits": "classification", "diabetes": "regression"}
_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npz": "npz", ".gz": "csv"}


@dataclass(frozen=True)
class Source:
    spec: str  # as the user wrote it, for messages and run.json
    paths: tuple[Path, ...]
    format: str  # csv | parquet | npz

    @property
    def builtin(self) -> bool:
        return self.spec.startswith("builtin:")

    def describe(self) -> str:
        return self.spec


def builtin_path(name: str, split: str) -> Path:
    return Path(str(resources.files("mlcli.datasets").joinpath(f"{name}_{split}.csv.gz")))


def resolve(spec: str, role: str = "data") -> Source:
    """`builtin:digits/train`, `data/x.csv`, `shards/part-*.parquet` -> the files to read."""
    if spec.startswith("builtin:"):
        name, _, split = spec[len("builtin:"):].partition("/")
        if name not in BUILTIN_SETS:
            raise DataError(
                f"{role}: unknown built-in data set {name!r} — expected one of "
                + ", ".join(f"builtin:{n}" for n in BUILTIN_SETS)
            )
        if split not in ("", "train", "test"):
            raise DataError(f"{role}: {spec!r}: unknown split {split!r} — expected /train, /test, or none (both)")
        splits = ("train", "test") if split == "" else (split,)
        return Source(spec, tuple(builtin_path(name, s) for s in splits), "csv")
    if any(ch in spec for ch in "*?["):
        matches = sorted(Path(p) for p in glob.glob(spec))
        if not matches:
            raise DataError(f"{role}: no file matches {spec!r} — check the pattern (relative to the config file)")
        formats = {_format_of(p, role) for p in matches}
        if len(formats) > 1:
            raise DataError(f"{role}: {spec!r} matches files of different formats ({', '.join(sorted(formats))})")
        return Source(spec, tuple(matches), formats.pop())
    path = Path(spec)
    if not path.exists():
        raise DataError(
            f"{role}: {spec}: file not found — check the path (paths in a config are relative to the config file)"
        )
    if path.is_dir():
        raise DataError(f"{role}: {spec}: is a directory — expected a .csv, .parquet or .npz file")
    if not os.access(path, os.R_OK):
        raise DataError(f"{role}: {spec}: permission denied — the file is not readable")
    return Source(spec, (path,), _format_of(path, role))


def _format_of(path: Path, role: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise DataError(
            f"{role}: {path}: unknown file type {suffix or '(none)'!r} — expected .csv, .parquet or .npz"
        )
    return _FORMATS[suffix]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_table(source: Source, role: str, columns: list[str] | None = None):
    """A pyarrow Table of a CSV/Parquet source (several files are concatenated in order)."""
    import pyarrow as pa

    tables = [_read_one(path, source.format, role, columns) for path in source.paths]
    if len(tables) == 1:
        return tables[0]
    first = tables[0].column_names
    for path, table in zip(source.paths[1:], tables[1:]):
        if table.column_names != first:
            raise DataError(
                f"{role}: {path}: columns differ from {source.paths[0]} — every shard needs the same columns"
            )
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"{role}: {source.spec}: shards have incompatible column types ({exc})") from None


def _read_one(path: Path, fmt: str, role: str, columns: list[str] | None):
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path, columns=columns)
        import pyarrow.csv as pacsv

        convert = pacsv.ConvertOptions(include_columns=columns) if columns else None
        table = pacsv.read_csv(path, convert_options=convert)
    except FileNotFoundError:
        raise DataError(f"{role}: {path}: file not found") from None
    except PermissionError:
        raise DataError(f"{role}: {path}: permission denied — the file is not readable") from None
    except IsADirectoryError:
        raise DataError(f"{role}: {path}: is a directory — expected a file") from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowKeyError, OSError, UnicodeDecodeError) as exc:
        not_text = _not_text(path) if fmt == "csv" else None
        if not_text:
            raise DataError(f"{role}: {path}: {not_text}") from None
        reason = _ragged_row(path, exc) if fmt == "csv" else None
        raise DataError(f"{role}: {path}: cannot be read as {fmt.upper()}: {reason or _arrow_reason(exc)}") from None
    try:
        _ = table.column_names  # pyarrow decodes the header lazily: a non-UTF-8 name fails only here
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{role}: {path}: " + ((_not_text(path) if fmt == "csv" else None)
                                   or f"the header row is not UTF-8 text ({exc.object!r}) — save the file as UTF-8")
        ) from None
    if table.num_columns == 0:
        raise DataError(f"{role}: {path}: has no columns — expected a header row naming the columns")
    return table


def _not_text(path: Path) -> str | None:
    """Why a CSV that pyarrow could not read is not UTF-8 text at all (NUL bytes), or None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "is UTF-16 text (as Excel's \"Unicode text\" saves it) — save the file as CSV UTF-8"
    if head.startswith(b"\x1f\x8b") or b"\x00" not in head:  # gzip: pyarrow decompresses it
        return None
    return ("is a binary file, not CSV text — expected comma-separated UTF-8 text "
            "(or name the file .parquet / .npz if that is what it is)")


def _ragged_row(path: Path, exc: BaseException) -> str | None:
    """pyarrow's "Expected 3 columns, got 4" names no row; read again, single-threaded, to find it."""
    import pyarrow.csv as pacsv

    if "Expected" not in str(exc) or "columns, got" not in str(exc):
        return None
    found: list = []

    def handler(row) -> str:
        found.append(row)
        return "error"

    with contextlib.suppress(Exception):  # the first error is already known; this only adds its row
        pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=False),
                       parse_options=pacsv.ParseOptions(invalid_row_handler=handler))
    if not found or found[0].number is None:
        return None
    row = found[0]
    return (f"row {row.number - 1}: {row.actual_columns} field(s) where the header has {row.expected_columns} "
            f"({row.text[:80]!r}) — every row needs one value per column")


def _arrow_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "Empty CSV file" in text:
        return "the file is empty — expected a header row and data rows"
    if "invalid UTF8" in text or "UTF8" in text:
        return f"{text} — save the file as UTF-8"
    return text


def read_npz(source: Source, role: str) -> dict[str, np.ndarray]:
    """All arrays of an .npz file; object arrays (pickles) are refused, never loaded."""
    if len(source.paths) != 1:
        raise DataError(f"{role}: {source.spec}: globs of .npz files are not supported — give one file")
    path = source.paths[0]
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
