"""The one input path of `evaluate` and `predict`: columns matched by name, read and checked in batches.

Both commands read their data through `InputReader`, so a file can never be read one way for
predictions and another way for metrics. Every header is checked before any row is read (a missing
column is exit 3 naming it); rows are then read in batches — pyarrow's streaming CSV reader,
ParquetFile.iter_batches, slices of an .npz — so memory does not grow with the file.

Values are converted and checked batch by batch (mlcli.data.values) by the same functions as
training's reader, so the messages name the same column and row, counted in the whole file.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlcli.data.columns import ColumnPlan, check_features_are_not_labels, check_header, listing, model_columns
from mlcli.data.feature_types import FeaturePlan
from mlcli.data.formats import csv
from mlcli.data.labels import class_indices, in_classes, label_array, regression_targets
from mlcli.data.sources import Source, resolve
from mlcli.data.typed_values import check_missing, model_input, row_count, rows_to_drop, take_rows
from mlcli.data.values import as_numbers, check_finite, label_missing, label_values, numeric_column
from mlcli.errors import DataError, first_line

STDIN = "-"


@dataclass
class Batch:
    x: np.ndarray | dict  # float32 (rows, *input_shape); typed features: {column: values}
    y: np.ndarray | None  # class indices (int32) or regression targets (float32, (rows, targets))
    kept: list  # the --keep columns (pyarrow arrays), in the order asked
    rows: int  # rows in this batch (after any label filter)
    kept_as_text: bool = False  # --keep columns of a CSV file: its text, exactly as written


@dataclass
class _Part:
    """One file of the input (a glob or builtin:NAME may hold several) with its column plan."""

    source: Source
    path: Path | None  # None: stdin
    plan: ColumnPlan  # tabular: column names in model input order; npz: the arrays by name
    arrays: dict | None = None  # npz
    header: list[str] | None = None  # stdin: the header already consumed
    table: object | None = None  # rows already in memory (a pyarrow Table: mlcli serve's request)


class InputReader:
    """Open `spec` (a path, glob, builtin:NAME[/SPLIT] or - for CSV on stdin) for batch reading.

    `table`: rows already in memory (a pyarrow Table with columns by name, as a file would hold them —
    mlcli serve's request), checked and converted exactly as a file's; `spec` then only names it in
    messages."""

    def __init__(self, spec: str, role: str, *, features: list[str] | None, input_shape: tuple[int, ...] | None,
                 labels: list[str] | None, keep: list[str] = (), task: str = "classification",
                 classes: list | None = None, only_classes: list | None = None, batch_rows: int = 65536,
                 typed: list[dict] | None = None, drop_missing: bool = False, missing_label: str = "error",
                 table=None):
        """`typed`: a typed model's feature records (run.json's features), read as training read them;
        `drop_missing`: rows missing a `missing: drop` feature are left out and counted (evaluate, as
        training did) instead of being an error (predict owes every row a prediction);
        `missing_label`: the run's data.missing_label (drop: rows without a label are left out, counted)."""
        self.spec, self.role = spec, role
        self.model_features = features
        self.plans = [FeaturePlan.from_record(r) for r in typed] if typed is not None else None
        self.drop_missing = drop_missing
        self.missing_label = missing_label
        self.dropped = 0  # rows left out for a missing value (drop_missing, missing_label: drop)
        self.input_shape = tuple(input_shape) if self.plans is None else (len(self.plans),)
        self.width = int(np.prod(self.input_shape))
        self.labels = list(labels or [])
        self.keep = list(dict.fromkeys(keep))
        self.task, self.classes, self.only_classes = task, classes, only_classes
        self.batch_rows = batch_rows
        self.extra: list[str] = []
        if table is not None:
            self.source = Source(spec, (), "table")
            self.parts = [_Part(self.source, None, self._plan(list(table.column_names), self.source), table=table)]
        elif spec == STDIN:
            self.source = Source("<stdin>", (), "csv")
            header = csv.read_header(sys.stdin.buffer, self.source.spec, role)
            self.parts = [_Part(self.source, None, self._plan(header, self.source), header=header)]
        else:
            self.source = resolve(spec, role)
            self.parts = [self._open(path) for path in self.source.paths]
        for part in self.parts:
            self.extra += [c for c in part.plan.extra if c not in self.extra]

    # ---- headers: every column checked before any row is read ------------------------------

    def _open(self, path: Path) -> _Part:
        source = self.source.file(path)
        if not source.format_module.TABULAR:
            arrays = source.format_module.read_arrays(path, self.role)
            return _Part(source, path, self._plan_npz(source, arrays), arrays=arrays)
        return _Part(source, path, self._plan(source.format_module.header(path, self.role, source.spec), source))

    def _plan(self, columns: list[str], source: Source) -> ColumnPlan:
        where = f"{self.role}: {source.spec}"
        check_header(columns, where)
        return model_columns(columns, where, features=self.model_features, width=self.width, labels=self.labels,
                             keep=self.keep)

    def _plan_npz(self, source: Source, arrays: dict) -> ColumnPlan:
        where = f"{self.role}: {source.spec}"
        if self.plans is not None:
            raise DataError(f"{where}: the model takes named columns of several types, which an .npz file does not "
                            "hold", hint="give a .csv or .parquet table with the model's columns")
        wanted = self.model_features[0] if self.model_features and len(self.model_features) == 1 else "x"
        name = wanted if wanted in arrays else "x"
        if name not in arrays:
            raise DataError(f"{where}: no array {wanted!r} — the arrays are: {listing(list(arrays))}; "
                            "an .npz input holds the features in an array named like the training one (default x)")
        x = arrays[name]
        if x.ndim < 2 or int(np.prod(x.shape[1:])) != self.width:
            raise DataError(f"{where}: array {name!r} has shape {x.shape} — "
                            f"the model takes (rows, {self.width} values)")
        if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
            raise DataError(f"{where}: array {name!r} holds {x.dtype} values — expected numbers")
        label_columns = []
        if self.labels:
            label = self.labels[0] if self.labels[0] in arrays else "y"
            if label not in arrays:
                raise DataError(f"{where}: no label array {self.labels[0]!r} (or y) — the arrays are: "
                                f"{listing(list(arrays))}")
            label_columns = [label]
            check_features_are_not_labels([name], label_columns, where)
        for column in [*label_columns, *self.keep]:
            if column not in arrays:
                raise DataError(f"{where}: --keep array {column!r} not found — "
                                f"the arrays are: {listing(list(arrays))}")
            if len(arrays[column]) != len(x) or arrays[column].ndim != 1:
                raise DataError(f"{where}: array {column!r} has shape {arrays[column].shape} — expected ({len(x)},), "
                                "one value per row")
        used = {name, *label_columns, *self.keep}
        return ColumnPlan([name], label_columns, list(self.keep), [a for a in arrays if a not in used])

    # ---- rows ---------------------------------------------------------------------------------

    def batches(self) -> Iterator[Batch]:
        for part in self.parts:
            offset = 0
            for table in self._tables(part):
                batch = self._convert(part, table, offset)
                offset += len(table[part.plan.features[0]]) if isinstance(table, dict) else table.num_rows
                if batch.rows:
                    yield batch

    def _tables(self, part: _Part):
        import pyarrow as pa  # deferred: imports pyarrow

        plan = part.plan
        if part.arrays is not None:
            rows = len(part.arrays[plan.features[0]])
            for start in range(0, rows, self.batch_rows):
                yield {name: part.arrays[name][start:start + self.batch_rows] for name in plan.needed}
            return
        if part.table is not None:
            yield from part.table.select(plan.needed).to_batches(self.batch_rows)
            return
        # Features that are also --keep columns stay text: kept columns are copied as written.
        numbers = plan.features if self.plans is None else [p.name for p in self.plans if p.type == "numeric"]
        numeric = [c for c in numbers if c not in plan.keep and c not in plan.labels]
        try:
            yield from part.source.format_module.batches(part.path, part.header, plan.needed, numeric,
                                                         self.batch_rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, EOFError, UnicodeDecodeError) as exc:
            kind = part.source.format.upper()
            raise DataError(f"{self.role}: {part.source.spec}: cannot be read as {kind}: {first_line(exc)}") from None

    def _convert(self, part: _Part, table, offset: int) -> Batch:
        source, role, features = part.source, self.role, part.plan.features
        if isinstance(table, dict):  # npz slices
            raw = table[features[0]]
            rows = len(raw)
            with np.errstate(over="ignore"):
                x = raw.astype(np.float32).reshape(rows, -1)
            check_finite(x, [f"{features[0]}_{i}" for i in range(self.width)], source, role, offset)
            kept = [_arrow(table[name]) for name in self.keep]
            labels = [table[name] for name in part.plan.labels]
        elif self.plans is not None:
            x, kept, labels = self._typed(part, table, offset)
            rows = row_count(x)
        else:
            labelled = self._labelled_rows(table, part)  # the rows in the file, when some are left out
            if labelled is not None:
                table = table.take(labelled)
            rows = table.num_rows
            # Column by column into a (features, rows) array, then one transpose: writing each
            # column straight into a (rows, features) array strides through memory (3x slower).
            columns = np.empty((len(features), rows), dtype=np.float32)
            for j, name in enumerate(features):
                columns[j] = numeric_column(as_numbers(table.column(name)), name, source, role, offset, labelled)
            x = np.ascontiguousarray(columns.T)
            check_finite(x, features, source, role, offset, labelled)
            kept = [table.column(name) for name in self.keep]
            labels = [label_values(table.column(name), name, self.task, self.classes, source, role, offset)
                      for name in part.plan.labels]
        y = None
        if labels:
            y, x, kept, rows = self._targets(labels, x, kept, part, offset)
        if self.plans is None:
            x = x.reshape((rows, *self.input_shape))
        return Batch(x, y, kept, rows, kept_as_text=not isinstance(table, dict) and source.format == "csv")

    def _typed(self, part: _Part, table, offset: int):
        """Typed features, converted as training converted them; rows missing a `missing: drop`
        feature left out (evaluate) or an error (predict)."""
        source, role = part.source, self.role
        x = {p.name: model_input(table.column(p.name), p, source, role, offset) for p in self.plans}
        check_missing(x, self.plans, source, role, offset)
        labelled = self._labelled_rows(table, part)
        if labelled is not None:
            x, table = take_rows(x, labelled), table.take(labelled)
        kept = [table.column(name) for name in self.keep]
        labels = [label_values(table.column(name), name, self.task, self.classes, source, role, offset)
                  for name in part.plan.labels]
        drop, counts = rows_to_drop(x, self.plans)
        if drop.any():
            if not self.drop_missing:
                name = next(iter(counts))
                row = int(np.flatnonzero(drop)[0])
                raise DataError(f"{role}: {source.spec}: column {name!r}, row {row + 1 + offset}: missing value — the "
                                "model was trained with missing: drop for this feature, so it has no way to fill it",
                                hint="fill the value, or leave the row out")
            index = np.flatnonzero(~drop)
            self.dropped += int(drop.sum())
            x = take_rows(x, index)
            kept = [column.take(index) for column in kept]
            labels = [values[index] for values in labels]
        return x, kept, labels

    def _labelled_rows(self, table, part: _Part) -> np.ndarray | None:
        """missing_label: drop — the rows with every label (None: all of them), the others counted."""
        if self.missing_label != "drop" or not part.plan.labels:
            return None
        missing = np.zeros(table.num_rows, dtype=bool)
        for name in part.plan.labels:
            missing |= label_missing(table.column(name))
        if not missing.any():
            return None
        self.dropped += int(missing.sum())
        return np.flatnonzero(~missing)

    def _targets(self, labels: list[np.ndarray], x, kept, part: _Part, offset: int):
        spec = part.source.spec
        if self.task != "classification":
            return (regression_targets(label_array(labels), self.role, spec, part.plan.labels, offset), x, kept,
                    row_count(x))
        values = labels[0]
        if self.only_classes is not None:
            # data.classes: the run's own test/validation rows are filtered exactly as training filtered them.
            mask = in_classes(values, self.only_classes)
            if not mask.all():
                index = np.flatnonzero(mask)
                values, x = values[index], take_rows(x, index)
                kept = [column.take(index) for column in kept]
        return class_indices(values, self.classes, self.role, spec, offset), x, kept, row_count(x)


def _arrow(values: np.ndarray):
    import pyarrow as pa  # deferred: imports pyarrow

    return pa.array(values)
