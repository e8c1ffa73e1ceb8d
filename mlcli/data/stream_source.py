"""A CSV or Parquet source (one file or a glob of shards) read in chunks, for data.stream.

Headers are checked before any row is read; rows then come in chunks of about CHUNK_ROWS (Parquet
`iter_batches`, pyarrow's streaming CSV reader), converted and checked by the in-memory reader's own
functions (mlcli.data.frames), so a bad value is named by the same column and row (counted within its
file). CSV columns are read as text and converted chunk by chunk: Arrow would otherwise fix a
column's type from its first block and fail on a decimal a million rows later.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlcli.data.frames import check_finite, column_hint, listing, numeric_column
from mlcli.data.sources import Source, resolve
from mlcli.errors import DataError, first_line

CHUNK_ROWS = 16_384  # Parquet rows per chunk (CSV: 2 MiB blocks) — a few MB of float32 at 64 features
CSV_BLOCK_BYTES = 2 << 20

# Label kinds, weakest last: a CSV label column is int if every value is, else float, else text.
_KINDS = ("bool", "int", "float", "str")


@dataclass(frozen=True)
class Unit:
    """What is read in one go: a CSV file, or one row group of a Parquet file."""

    path: Path
    row_group: int | None
    file_row: int  # rows of its file before it


class ChunkSource:
    """data.train / validation / test as chunks: (unit, first row within its file, Arrow table)."""

    def __init__(self, spec: str, role: str, *, labels: list[str], features: list[str] | str | None):
        self.spec, self.role = spec, role
        self.source = resolve(spec, role)
        if self.source.format == "npz":
            raise DataError(f"{role}: {spec}: data.stream reads CSV or Parquet in chunks; an .npz file is read whole",
                            hint="set data.stream: false, or save the data as Parquet (or CSV) shards")
        self.label_names = list(labels)
        columns = None
        self.units: list[Unit] = []
        for path in self.source.paths:
            found = self._columns(path)
            if columns is not None and found != columns:
                raise DataError(f"{role}: {path}: columns differ from {self.source.paths[0]} — every shard needs the "
                                "same columns")
            columns = found
            self.units += self._units(path)
        self.columns = columns
        self.feature_names = self._feature_names(columns, features)

    def file_source(self, path: Path) -> Source:
        """How messages name a file: the spec for one file, the shard's path for a glob."""
        return self.source if len(self.source.paths) == 1 else Source(str(path), (path,), self.source.format)

    # ---- headers --------------------------------------------------------------------------

    def _columns(self, path: Path) -> list[str]:
        import pyarrow as pa

        try:
            if self.source.format == "parquet":
                import pyarrow.parquet as pq

                columns = pq.ParquetFile(path).schema_arrow.names
            else:
                from mlcli.data.batches import read_header

                opener = gzip.open if path.suffix.lower() == ".gz" else open
                with opener(path, "rb") as handle:
                    columns = read_header(handle, self.file_source(path), self.role)
        except (pa.ArrowInvalid, OSError, EOFError) as exc:
            raise DataError(f"{self.role}: {path}: cannot be read as {self.source.format.upper()}: "
                            f"{first_line(exc)}") from None
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if duplicated:
            raise DataError(f"{self.role}: {path}: column(s) {', '.join(duplicated)} appear twice in the header")
        return list(columns)

    def _units(self, path: Path) -> list[Unit]:
        if self.source.format != "parquet":
            return [Unit(path, None, 0)]
        import pyarrow.parquet as pq

        metadata = pq.ParquetFile(path).metadata
        units, before = [], 0
        for group in range(metadata.num_row_groups):
            units.append(Unit(path, group, before))
            before += metadata.row_group(group).num_rows
        return units

    def _feature_names(self, columns: list[str], features) -> list[str]:
        where = f"{self.role}: {self.spec}"
        missing_labels = [c for c in self.label_names if c not in columns]
        if missing_labels:
            raise DataError(f"{where}: label column {missing_labels[0]!r} not found — the columns are: "
                            f"{listing(columns)}{column_hint(missing_labels[0], columns)}; set data.label to the right one")
        if features is None:
            names = [c for c in columns if c not in self.label_names]
        else:
            names = [features] if isinstance(features, str) else list(features)
            missing = [c for c in names if c not in columns]
            if missing:
                raise DataError(f"{where}: feature column(s) {', '.join(map(repr, missing))} not found — the columns "
                                f"are: {listing(columns)}{column_hint(missing[0], columns)}")
        if not names:
            raise DataError(f"{where}: no feature columns — the file holds only the label column(s)")
        return names

    # ---- rows -----------------------------------------------------------------------------

    def chunks(self, order: np.ndarray | None = None) -> Iterator[tuple[Unit, int, object]]:
        """Every unit's rows in chunks; `order` permutes the units (Parquet row groups, CSV files)."""
        import pyarrow as pa

        needed = list(dict.fromkeys(self.feature_names + self.label_names))
        units = self.units if order is None else [self.units[i] for i in order]
        for unit in units:
            offset = unit.file_row
            try:
                for table in self._read(unit, needed):
                    yield unit, offset, table
                    offset += table.num_rows
            except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, EOFError, UnicodeDecodeError) as exc:
                raise DataError(f"{self.role}: {unit.path}: cannot be read as {self.source.format.upper()} "
                                f"(after row {offset}): {first_line(exc)}") from None

    def _read(self, unit: Unit, needed: list[str]):
        import pyarrow as pa

        if unit.row_group is not None:
            import pyarrow.parquet as pq

            yield from pq.ParquetFile(unit.path).iter_batches(batch_size=CHUNK_ROWS, row_groups=[unit.row_group],
                                                              columns=needed)
            return
        import pyarrow.csv as pacsv

        convert = pacsv.ConvertOptions(include_columns=needed, column_types={c: pa.string() for c in needed},
                                       strings_can_be_null=True)
        try:
            reader = pacsv.open_csv(unit.path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                                    convert_options=convert)
        except pa.ArrowInvalid as exc:
            if "Empty CSV" in str(exc):
                return
            raise
        yield from reader

    def features(self, table, unit: Unit, offset: int) -> np.ndarray:
        """float32 (rows, features), every value checked as the in-memory reader checks it."""
        from mlcli.data.batches import as_numbers

        source = self.file_source(unit.path)
        x = np.empty((table.num_rows, len(self.feature_names)), dtype=np.float32)
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, reported by check_finite
            for j, name in enumerate(self.feature_names):
                x[:, j] = numeric_column(as_numbers(table.column(name)), name, source, self.role, offset)
        check_finite(x, self.feature_names, source, self.role, offset)
        return x

    def labels(self, table, unit: Unit, offset: int, kind: str | None = None) -> list[np.ndarray]:
        """Each label column's values: as typed in Parquet; CSV text as `kind` (int, float, str, bool),
        or as the weakest kind that fits this chunk when `kind` is None."""
        import pyarrow.compute as pc

        out = []
        for name in self.label_names:
            column = table.column(name)
            if column.null_count:
                row = int(pc.index(pc.is_null(column), True).as_py())
                raise DataError(f"{self.role}: {self.file_source(unit.path).spec}: label column {name!r}, "
                                f"row {row + 1 + offset}: missing label")
            out.append(_as_kind(column, kind))
        return out


def column_kind(column) -> str:
    """The label kind of an Arrow column: its type, or for CSV text the weakest kind every value fits."""
    import pyarrow as pa

    kind = column.type
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_integer(kind):
        return "int"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "float"
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return "str"
    for name, target in (("int", pa.int64()), ("float", pa.float64())):
        if _cast(column, target) is not None:
            return name
    return "str"


def weakest(kinds) -> str:
    return max(kinds, key=_KINDS.index) if kinds else "str"


def _as_kind(column, kind: str | None) -> np.ndarray:
    import pyarrow as pa

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        values = column.to_numpy(zero_copy_only=False)
        return values.astype(object) if values.dtype.kind in "US" else values
    kind = kind or column_kind(column)
    targets = {"int": (pa.int64(), pa.float64()), "float": (pa.float64(),), "bool": (pa.bool_(),)}.get(kind, ())
    for target in targets:
        cast = _cast(column, target)
        if cast is not None:
            return cast.to_numpy(zero_copy_only=False)
    return np.asarray(column.to_pylist(), dtype=object)  # text; a lookup names any value that fits nothing


def _cast(column, target):
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pc.cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None

