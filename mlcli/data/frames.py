"""From a source to in-memory arrays: features by name (a float matrix, or typed columns), labels as
written, every value checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mlcli.data.columns import check_features_are_not_labels, check_header, listing, training_columns
from mlcli.data.feature_types import FeaturePlan
from mlcli.data.labels import label_array
from mlcli.data.sources import Source, resolve, sha256
from mlcli.data.typed_values import check_missing, model_input, row_count, rows_to_drop, take_rows
from mlcli.data.values import as_numpy, check_finite, check_labels_present, check_text, float_matrix, label_missing
from mlcli.errors import DataError


@dataclass
class Frame:
    """One data source in memory: the features and the raw label values.

    `x` is a float32 matrix on the plain path, or {column: values} for typed features (`plans`, in
    model input order; mlcli.data.typed_values says what each column's values are)."""

    x: np.ndarray | dict
    y: np.ndarray | None
    feature_names: list[str]
    label_names: list[str]
    source: Source
    extra_columns: list[str] = field(default_factory=list)
    plans: list[FeaturePlan] | None = None
    dropped: dict[str, int] = field(default_factory=dict)  # rows left out, by why: "missing label", "missing age"

    @property
    def rows(self) -> int:
        return row_count(self.x)

    def facts(self) -> list[dict]:
        """For run.json: every file with its sha256 and row count (and the rows dropped, by why)."""
        files = [{"path": str(p), "sha256": sha256(p)} for p in self.source.paths]
        if len(files) == 1:
            files[0]["rows"] = self.rows
        facts = {"spec": self.source.spec, "rows": self.rows, "files": files}
        if self.dropped:
            facts["dropped"] = dict(self.dropped)
        return [facts]

    def take(self, index: np.ndarray) -> "Frame":
        y = None if self.y is None else self.y[index]
        return Frame(take_rows(self.x, index), y, self.feature_names, self.label_names, self.source,
                     self.extra_columns, self.plans, self.dropped)


# A reader's choice of feature types, given the table and the feature columns: the plans of a typed
# run, or None for the plain float path (mlcli.data.feature_types.plan_features for data.train; the
# training file's plans for the validation and test files).
ChooseTypes = Callable[[Any, list], "list[FeaturePlan] | None"]


def load_frame(
    spec: str,
    role: str,
    *,
    labels: list[str] | None,
    features: list[str] | str | None,
    exclude: list[str] = (),
    choose_types: ChooseTypes | None = None,
    missing_label: str = "error",
) -> Frame:
    """Read `spec`; `labels=None` reads features only (prediction input). `missing_label` (error |
    drop) is data.missing_label: a row without a label is an error, or left out and counted."""
    source = resolve(spec, role)
    if not source.format_module.TABULAR:
        return _npz_frame(source, role, labels, features)
    table = _read_table(source, role)
    where = f"{role}: {source.spec}"
    check_header(table.column_names, where)
    plan = training_columns(table.column_names, where, labels=list(labels or []), features=features,
                            exclude=list(exclude))
    if table.num_rows == 0:
        raise DataError(f"{where}: has a header but no data rows")
    for name in plan.features + plan.labels:
        check_text(table.column(name), name, source, role)
    kept = _rows_with_labels(table, plan.labels, source, role, missing_label)
    dropped = {"missing label": table.num_rows - len(kept)} if kept is not None else {}
    plans = choose_types(table, plan.features) if choose_types is not None else None
    if plans is not None:
        return _typed_frame(table, plan, plans, source, role, kept, dropped)
    rows = kept
    if kept is not None:
        table = table.take(kept)
    x = float_matrix(table, plan.features, source, role, rows=rows)
    check_finite(x, plan.features, source, role, rows=rows)
    y = _label_values(table, plan.labels, source, role) if plan.labels else None
    del table
    _release_arrow_memory()
    return Frame(x, y, plan.features, plan.labels, source, plan.extra, dropped=dropped)


def _release_arrow_memory() -> None:
    """Give back to the system what Arrow's allocator keeps of the tables read so far (its pool holds
    freed memory for reuse: after a CSV read, about as much as the file again)."""
    import pyarrow as pa  # deferred: imports pyarrow

    pa.default_memory_pool().release_unused()


def _typed_frame(table, plan, plans: list[FeaturePlan], source: Source, role: str, kept: np.ndarray | None,
                 dropped: dict[str, int]) -> Frame:
    """Typed features: every column converted on the whole table (a bad value is named by its row in
    the file), then the rows without a label or missing a `missing: drop` feature left out."""
    x = {p.name: model_input(table.column(p.name), p, source, role) for p in plans}
    check_missing(x, plans, source, role)
    keep = np.ones(table.num_rows, dtype=bool)
    if kept is not None:
        keep[:] = False
        keep[kept] = True
    drop, counts = rows_to_drop(x, plans)
    dropped = {**dropped, **{f"missing {name}": count for name, count in counts.items()}}
    index = np.flatnonzero(keep & ~drop)
    if len(index) == 0:
        raise DataError(f"{role}: {source.spec}: no row is left once the rows missing a value are dropped "
                        f"({', '.join(f'{why}: {count}' for why, count in dropped.items())})",
                        hint="fill the values, or choose a filling policy (data.missing: auto)")
    y = _label_values(table.take(index), plan.labels, source, role) if plan.labels else None
    return Frame(take_rows(x, index), y, plan.features, plan.labels, source, plan.extra, plans, dropped)


def _rows_with_labels(table, labels: list[str], source: Source, role: str, missing_label: str) -> np.ndarray | None:
    """The rows that have every label (None: all of them). A missing label is an error (named by its
    row, with _label_values's message) unless data.missing_label is drop."""
    if not labels or missing_label != "drop":
        return None
    missing = np.zeros(table.num_rows, dtype=bool)
    for name in labels:
        missing |= label_missing(table.column(name))
    if not missing.any():
        return None
    if missing.all():
        raise DataError(f"{role}: {source.spec}: the label column {labels[0]!r} has no value in any row",
                        hint="check data.label names the right column")
    return np.flatnonzero(~missing)


def _read_table(source: Source, role: str):
    """A pyarrow Table of a tabular source (several files are concatenated in order)."""
    import pyarrow as pa  # deferred: imports pyarrow

    tables = [source.format_module.read_table(path, role) for path in source.paths]
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


def _label_values(table, label_names: list[str], source: Source, role: str) -> np.ndarray:
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.compute as pc  # deferred: imports pyarrow

    out = []
    for name in label_names:
        column = table.column(name)
        check_labels_present(column, name, source, role)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            # An empty cell of a text column is "" to Arrow's CSV reader, not null: a missing label all the same.
            blank = pc.equal(pc.utf8_trim_whitespace(column), "")
            if pc.any(blank).as_py():
                row = int(pc.index(blank, True).as_py())
                raise DataError(f"{role}: {source.spec}: label column {name!r}, row {row + 1}: missing label")
            values = np.asarray(column.to_pylist(), dtype=object)
        else:
            values = as_numpy(column)
        out.append(values)
    return label_array(out)


def _npz_frame(source: Source, role: str, labels: list[str] | None, features) -> Frame:
    if len(source.paths) != 1:
        raise DataError(f"{role}: {source.spec}: globs of .npz files are not supported — give one file")
    arrays = source.format_module.read_arrays(source.paths[0], role)
    feature_name = features if isinstance(features, str) else "x"
    if isinstance(features, list):
        if len(features) != 1:
            raise DataError(f"{role}: {source.spec}: for .npz, data.features names one array (default x)")
        feature_name = features[0]
    if feature_name not in arrays:
        raise DataError(
            f"{role}: {source.spec}: no array {feature_name!r} — the arrays are: {listing(list(arrays))}; "
            "set data.features to the features array"
        )
    x_raw = arrays[feature_name]
    if x_raw.ndim < 2:
        raise DataError(f"{role}: {source.spec}: array {feature_name!r} has shape {x_raw.shape} — expected (rows, features...)")
    if not np.issubdtype(x_raw.dtype, np.number) and x_raw.dtype != bool:
        raise DataError(f"{role}: {source.spec}: array {feature_name!r} holds {x_raw.dtype} values — expected numbers")
    if len(x_raw) == 0:
        raise DataError(f"{role}: {source.spec}: array {feature_name!r} has no rows")
    with np.errstate(over="ignore"):
        x = x_raw.astype(np.float32)
    names = [f"{feature_name}_{i}" for i in range(int(np.prod(x.shape[1:])))]
    check_finite(x, names, source, role)
    y = None
    label_names: list[str] = []
    if labels:
        label_name = labels[0]
        if label_name == "label" and "label" not in arrays:
            label_name = "y"  # the contract's .npz default
        if len(labels) > 1:
            raise DataError(f"{role}: {source.spec}: for .npz, data.label names one array (default y)")
        check_features_are_not_labels([feature_name], [label_name], f"{role}: {source.spec}")
        if label_name not in arrays:
            raise DataError(
                f"{role}: {source.spec}: no label array {label_name!r} — the arrays are: {listing(list(arrays))}; "
                "set data.label to the label array"
            )
        y = arrays[label_name]
        if len(y) != len(x):
            raise DataError(
                f"{role}: {source.spec}: {len(x)} feature rows but {len(y)} labels — the arrays must have the same length"
            )
        if y.dtype.kind == "U":
            y = y.astype(object)
        label_names = [label_name]
    return Frame(x, y, [feature_name], label_names, source)
