"""A CSV or Parquet source (one file or a glob of shards) read in chunks, for data.stream.

Headers are checked before any row is read; rows then come in chunks (mlcli.data.formats: Parquet
row groups in batches, CSV blocks as text), converted and checked by the in-memory reader's own
functions (mlcli.data.values), so a bad value is named by the same column and row (counted within
its file).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlcli.data.columns import check_header, training_columns
from mlcli.data.sources import Source, resolve
from mlcli.data.typed_values import check_missing, model_input, rows_to_drop
from mlcli.data.values import as_numbers, check_finite, check_labels_present, labels_as, numeric_column
from mlcli.errors import DataError, first_line


@dataclass(frozen=True)
class Unit:
    """What is read in one go: a CSV file, or one row group of a Parquet file."""

    path: Path
    row_group: int | None
    file_row: int  # rows of its file before it


class ChunkSource:
    """data.train / validation / test as chunks: (unit, first row within its file, Arrow table)."""

    def __init__(self, spec: str, role: str, *, labels: list[str], features: list[str] | str | None,
                 exclude: list[str] = ()):
        self.spec, self.role = spec, role
        self.source = resolve(spec, role)
        if not self.source.format_module.TABULAR:
            raise DataError(f"{role}: {spec}: data.stream reads CSV or Parquet in chunks; an .npz file is read whole",
                            hint="set data.stream: false, or save the data as Parquet (or CSV) shards")
        self.format = self.source.format_module
        columns = None
        self.units: list[Unit] = []
        for path in self.source.paths:
            found = self.format.header(path, role, self.file_source(path).spec)
            check_header(found, f"{role}: {path}")
            if columns is not None and found != columns:
                raise DataError(f"{role}: {path}: columns differ from {self.source.paths[0]} — every shard needs the "
                                "same columns")
            columns = found
            self.units += [Unit(path, group, before) for group, before in self.format.units(path)]
        self.plan = training_columns(columns, f"{role}: {spec}", labels=list(labels), features=features,
                                     exclude=list(exclude))
        self.feature_names, self.label_names = self.plan.features, self.plan.labels

    def file_source(self, path: Path) -> Source:
        """How messages name a file: the spec for one file, the shard's path for a glob."""
        return self.source.file(path)

    def chunks(self, order: np.ndarray | None = None) -> Iterator[tuple[Unit, int, object]]:
        """Every unit's rows in chunks; `order` permutes the units (Parquet row groups, CSV files)."""
        import pyarrow as pa  # deferred: imports pyarrow

        units = self.units if order is None else [self.units[i] for i in order]
        for unit in units:
            offset = unit.file_row
            try:
                for table in self.format.chunks(unit.path, self.plan.needed, unit.row_group):
                    yield unit, offset, table
                    offset += table.num_rows
            except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, EOFError, UnicodeDecodeError) as exc:
                raise DataError(f"{self.role}: {unit.path}: cannot be read as {self.source.format.upper()} "
                                f"(after row {offset}): {first_line(exc)}") from None

    def features(self, table, unit: Unit, offset: int) -> np.ndarray:
        """float32 (rows, features), every value checked as the in-memory reader checks it."""
        source = self.file_source(unit.path)
        x = np.empty((table.num_rows, len(self.feature_names)), dtype=np.float32)
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, reported by check_finite
            for j, name in enumerate(self.feature_names):
                x[:, j] = numeric_column(as_numbers(table.column(name)), name, source, self.role, offset)
        check_finite(x, self.feature_names, source, self.role, offset)
        return x

    def typed_features(self, table, unit: Unit, offset: int, plans: list) -> tuple[dict, np.ndarray, dict]:
        """Typed features ({column: model input}, mlcli.data.typed_values), the rows to keep (False for a
        row missing a `missing: drop` feature) and how many were dropped for each such feature. A missing value under `missing: error` is exit 3
        naming its row, as in memory."""
        source = self.file_source(unit.path)
        x = {p.name: model_input(table.column(p.name), p, source, self.role, offset) for p in plans}
        check_missing(x, plans, source, self.role, offset)
        drop, counts = rows_to_drop(x, plans)
        return x, ~drop, counts

    def labels(self, table, unit: Unit, offset: int, kind: str | None = None) -> list[np.ndarray]:
        """Each label column's values: as typed in Parquet; CSV text as `kind` (int, float, str, bool),
        or as the weakest kind that fits this chunk when `kind` is None."""
        out = []
        for name in self.label_names:
            column = table.column(name)
            check_labels_present(column, name, self.file_source(unit.path), self.role, offset)
            out.append(labels_as(column, kind))
        return out
