"""Parquet files (pyarrow): read whole, by header, by row group (data.stream) or in batches.

What a file holds is known from its metadata (rows, columns, types) before any row is read: a
column of one repeated value is a few bytes on disk however many rows it has (run-length encoded),
so the encoded sizes say nothing of what reading it whole takes.
"""

from __future__ import annotations

from pathlib import Path

from mlcli import limits
from mlcli.data.formats.tables import header_errors, read_whole

NAME = "parquet"
TABULAR = True
CHUNK_ROWS = 16_384  # rows per data.stream chunk — a few MB of float32 at 64 features
_WIDTHS = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 12, "FLOAT": 4, "DOUBLE": 8}  # bytes a value in Arrow
_OFFSET_BYTES = 4  # a text or binary value's offset in Arrow


def read_table(path: Path, role: str):
    """The whole file, when what its metadata declares fits in memory."""
    import pyarrow.parquet as pq  # deferred: imports pyarrow

    limits.fits(declared(path, role, 0), f"{role}: {path}")
    return read_whole(path, role, "PARQUET", lambda: pq.read_table(path), lambda exc: None)


def declared(path: Path, role: str, up_to: int) -> limits.Declared:
    """Arrow's size of the whole file from its metadata (`up_to` is for formats that count): rows
    times each column's width (text: see _text_bytes). Reading it whole also makes float32 features:
    4 bytes a value more."""
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.parquet as pq  # deferred: imports pyarrow

    try:
        metadata = pq.ParquetFile(path).metadata
    except (pa.ArrowInvalid, OSError):
        return limits.Declared(0, 0)  # a file that cannot be opened declares nothing: its reader says why
    data = 0
    for i in range(metadata.num_columns):
        column = metadata.schema.column(i)
        if column.physical_type == "BYTE_ARRAY":
            data += sum(_text_bytes(metadata.row_group(g), i) for g in range(metadata.num_row_groups))
        elif column.physical_type == "FIXED_LEN_BYTE_ARRAY":
            data += metadata.num_rows * column.length
        else:
            data += metadata.num_rows * _WIDTHS[column.physical_type]
    return limits.Declared(data, data + 4 * metadata.num_rows * metadata.num_columns)


def _text_bytes(group, i: int) -> int:
    """A text or binary column chunk in Arrow: an offset a value, and values as long as its statistics'
    min and max on average (one long value repeated is a few bytes on disk, dictionary encoded), or
    its encoded size when that is more."""
    chunk = group.column(i)
    typical = 0.0
    statistics = chunk.statistics
    if statistics is not None and statistics.has_min_max:  # raw: the stored bytes, not decoded
        typical = (len(statistics.min_raw) + len(statistics.max_raw)) / 2
    return max(chunk.total_uncompressed_size, int(group.num_rows * (_OFFSET_BYTES + typical)))


def header(path: Path, role: str, name: str):
    """The column names, from the file's schema; `name` is unused (a CSV names its file in messages)."""
    import pyarrow.parquet as pq  # deferred: imports pyarrow

    with header_errors(path, role, "PARQUET"):
        return pq.ParquetFile(path).schema_arrow.names


def units(path: Path) -> list[tuple[int | None, int]]:
    """What data.stream reads (and shuffles) one at a time: each row group, with the rows before it."""
    import pyarrow.parquet as pq  # deferred: imports pyarrow

    metadata = pq.ParquetFile(path).metadata
    units, before = [], 0
    for group in range(metadata.num_row_groups):
        units.append((group, before))
        before += metadata.row_group(group).num_rows
    return units


def chunks(path: Path, needed: list[str], row_group: int | None):
    """data.stream: one row group's `needed` columns, CHUNK_ROWS rows at a time."""
    import pyarrow.parquet as pq  # deferred: imports pyarrow

    yield from pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS, row_groups=[row_group], columns=needed)


def batches(path: Path, header: list[str] | None, needed: list[str], numeric: list[str], batch_rows: int):
    """evaluate/predict: the `needed` columns, `batch_rows` rows at a time (Parquet columns are typed)."""
    import pyarrow.parquet as pq  # deferred: imports pyarrow

    yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=needed)
