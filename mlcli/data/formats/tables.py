"""What the tabular formats share: pyarrow's failures reading a file, as DataErrors naming the file."""

from __future__ import annotations

import contextlib
import zlib
from pathlib import Path

from mlcli.errors import DataError, first_line


def read_whole(path: Path, role: str, kind: str, read, explain):
    """`read()`, pyarrow reading `path` whole, checked: every failure is a DataError naming the file.

    `explain(exc)`: the format's own account of a failure (a binary file, a ragged CSV row), or None
    for pyarrow's. `kind` names the format in messages (CSV, PARQUET).
    """
    import pyarrow as pa  # deferred: imports pyarrow

    try:
        table = read()
    except FileNotFoundError:
        raise DataError(f"{role}: {path}: file not found") from None
    except PermissionError:
        raise DataError(f"{role}: {path}: permission denied — the file is not readable") from None
    except IsADirectoryError:
        raise DataError(f"{role}: {path}: is a directory — expected a file") from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowKeyError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{role}: {path}: {explain(exc) or f'cannot be read as {kind}: {arrow_reason(exc)}'}") \
            from None
    try:
        _ = table.column_names  # pyarrow decodes the header lazily: a non-UTF-8 name fails only here
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{role}: {path}: " + (explain(exc)
                                   or f"the header row is not UTF-8 text ({exc.object!r}) — save the file as UTF-8")
        ) from None
    if table.num_columns == 0:
        raise DataError(f"{role}: {path}: has no columns — expected a header row naming the columns")
    return table


@contextlib.contextmanager
def header_errors(path: Path, role: str, kind: str):
    """Reading a header (no rows): a file pyarrow or the OS cannot open is a DataError naming it."""
    import pyarrow as pa  # deferred: imports pyarrow

    try:
        yield
    except (pa.ArrowInvalid, OSError, EOFError, zlib.error) as exc:  # zlib: a damaged gzip stream
        raise DataError(f"{role}: {path}: cannot be read as {kind}: {first_line(exc)}") from None


def arrow_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "Empty CSV file" in text:
        return "the file is empty — expected a header row and data rows"
    if "invalid UTF8" in text or "UTF8" in text:
        return f"{text} — save the file as UTF-8"
    return text
