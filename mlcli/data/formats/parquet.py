"""Parquet files (pyarrow): read whole, by header, by row group (data.stream) or in batches."""

from __future__ import annotations

from pathlib import Path

from mlcli.data.formats.tables import header_errors, read_whole

NAME = "parquet"
TABULAR = True
CHUNK_ROWS = 16_384  # rows per data.stream chunk — a few MB of float32 at 64 features


def read_table(path: Path, role: str):
    import pyarrow.parquet as pq

    return read_whole(path, role, "PARQUET", lambda: pq.read_table(path), lambda exc: None)


def header(path: Path, role: str, name: str):
    """The column names, from the file's schema; `name` is unused (a CSV names its file in messages)."""
    import pyarrow.parquet as pq

    with header_errors(path, role, "PARQUET"):
        return pq.ParquetFile(path).schema_arrow.names


def units(path: Path) -> list[tuple[int | None, int]]:
    """What data.stream reads (and shuffles) one at a time: each row group, with the rows before it."""
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata
    units, before = [], 0
    for group in range(metadata.num_row_groups):
        units.append((group, before))
        before += metadata.row_group(group).num_rows
    return units


def chunks(path: Path, needed: list[str], row_group: int | None):
    """data.stream: one row group's `needed` columns, CHUNK_ROWS rows at a time."""
    import pyarrow.parquet as pq

    yield from pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS, row_groups=[row_group], columns=needed)


def batches(path: Path, header: list[str] | None, needed: list[str], numeric: list[str], batch_rows: int):
    """evaluate/predict: the `needed` columns, `batch_rows` rows at a time (Parquet columns are typed)."""
    import pyarrow.parquet as pq

    yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=needed)
