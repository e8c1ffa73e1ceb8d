"""From a source to in-memory arrays: features by name, labels as written, every value checked."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np

from mlcli.data.sources import Source, read_npz, read_table, resolve, sha256
from mlcli.errors import DataError


@dataclass
class Frame:
    """One data source in memory: float32 features and the raw label values."""

    x: np.ndarray
    y: np.ndarray | None
    feature_names: list[str]
    label_names: list[str]
    source: Source
    extra_columns: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])

    def facts(self) -> list[dict]:
        """For run.json: every file with its sha256 and row count."""
        files = [{"path": str(p), "sha256": sha256(p)} for p in self.source.paths]
        if len(files) == 1:
            files[0]["rows"] = self.rows
        return [{"spec": self.source.spec, "rows": self.rows, "files": files}]

    def take(self, index: np.ndarray) -> "Frame":
        y = None if self.y is None else self.y[index]
        return Frame(self.x[index], y, self.feature_names, self.label_names, self.source, self.extra_columns)


def load_frame(
    spec: str,
    role: str,
    *,
    labels: list[str] | None,
    features: list[str] | str | None,
) -> Frame:
    """Read `spec`; `labels=None` reads features only (prediction input)."""
    source = resolve(spec, role)
    if source.format == "npz":
        return _npz_frame(source, role, labels, features)
    table = read_table(source, role)
    columns = table.column_names
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise DataError(f"{role}: {source.spec}: column(s) {', '.join(duplicated)} appear twice in the header")
    label_names = list(labels or [])
    missing_labels = [c for c in label_names if c not in columns]
    if missing_labels:
        raise DataError(
            f"{role}: {source.spec}: label column {missing_labels[0]!r} not found — the columns are: "
            f"{listing(columns)}{column_hint(missing_labels[0], columns)}; set data.label to the right one"
        )
    if features is None:
        feature_names = [c for c in columns if c not in label_names]
    else:
        feature_names = [features] if isinstance(features, str) else list(features)
        missing = [c for c in feature_names if c not in columns]
        if missing:
            raise DataError(
                f"{role}: {source.spec}: feature column(s) {', '.join(map(repr, missing))} not found — "
                f"the columns are: {listing(columns)}{column_hint(missing[0], columns)}"
            )
    if not feature_names:
        raise DataError(f"{role}: {source.spec}: no feature columns — the file holds only the label column(s)")
    if table.num_rows == 0:
        raise DataError(f"{role}: {source.spec}: has a header but no data rows")
    for name in feature_names + label_names:
        check_text(table.column(name), name, source, role)
    x = np.empty((table.num_rows, len(feature_names)), dtype=np.float32)
    with np.errstate(over="ignore"):  # values beyond float32 become inf, reported by check_finite
        for j, name in enumerate(feature_names):
            x[:, j] = numeric_column(table.column(name), name, source, role)
    check_finite(x, feature_names, source, role)
    y = None
    if label_names:
        y = _label_values(table, label_names, source, role)
    used = set(feature_names) | set(label_names)
    extra = [c for c in columns if c not in used]
    return Frame(x, y, feature_names, label_names, source, extra)


def numeric_column(column, name: str, source: Source, role: str, row_offset: int = 0) -> np.ndarray:
    """A column as float64, or a DataError naming the first row that is missing or not a number."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if column.null_count:
        row = int(pc.index(pc.is_null(column), True).as_py())
        raise DataError(
            f"{role}: {source.spec}: column {name!r}, row {row + 1 + row_offset}: missing or NaN value — "
            "every feature needs a number (fill or drop the row)"
        )
    if pa.types.is_boolean(kind):  # True/False as 1/0, the same in every reader (Arrow has no zero-copy view)
        return pc.cast(column, pa.float64()).to_numpy()
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return column.to_numpy().astype(np.float64, copy=False)
    if pa.types.is_decimal(kind):
        return pc.cast(column, pa.float64()).to_numpy()
    values = column.to_pylist()
    out = np.empty(len(values), dtype=np.float64)
    for row, value in enumerate(values):
        try:
            out[row] = float(value)
        except (TypeError, ValueError):
            raise DataError(
                f"{role}: {source.spec}: column {name!r}, row {row + 1 + row_offset}: {value!r} is not a number — "
                "features must be numeric (encode categories as numbers, or list data.features without this column)"
            ) from None
    return out


def check_text(column, name: str, source: Source, role: str, row_offset: int = 0) -> None:
    """pyarrow reads text that is not UTF-8 as raw bytes: say so, naming the first bad row."""
    import pyarrow as pa

    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        return
    for row, value in enumerate(column.to_pylist()):
        try:
            if value is not None:
                value.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(
                f"{role}: {source.spec}: column {name!r}, row {row + 1 + row_offset}: {value!r} is not UTF-8 text "
                "— save the file as UTF-8"
            ) from None


def check_finite(x: np.ndarray, names: list[str], source: Source, role: str, row_offset: int = 0) -> None:
    finite = np.isfinite(x)
    if finite.all():
        return
    bad = np.argwhere(~finite.reshape(len(x), -1))[0]
    row, col = int(bad[0]), int(bad[1])
    value = x.reshape(len(x), -1)[row, col]
    name = names[col] if len(names) > col else f"feature {col}"
    what = "NaN" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    note = " (or a value too large for float32)" if np.isinf(value) else ""
    raise DataError(
        f"{role}: {source.spec}: column {name!r}, row {row + 1 + row_offset}: {what}{note} in the features — "
        "features must be finite numbers (fill or drop the row)"
    )


def _label_values(table, label_names: list[str], source: Source, role: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    out = []
    for name in label_names:
        column = table.column(name)
        if column.null_count:
            row = int(pc.index(pc.is_null(column), True).as_py())
            raise DataError(f"{role}: {source.spec}: label column {name!r}, row {row + 1}: missing label")
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            # An empty cell of a text column is "" to Arrow's CSV reader, not null: a missing label all the same.
            blank = pc.equal(pc.utf8_trim_whitespace(column), "")
            if pc.any(blank).as_py():
                row = int(pc.index(blank, True).as_py())
                raise DataError(f"{role}: {source.spec}: label column {name!r}, row {row + 1}: missing label")
            values = np.asarray(column.to_pylist(), dtype=object)
        else:
            values = column.to_numpy()
        out.append(values)
    return out[0] if len(out) == 1 else np.stack(out, axis=1)


def _npz_frame(source: Source, role: str, labels: list[str] | None, features) -> Frame:
    arrays = read_npz(source, role)
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


def column_hint(name: str, columns: list[str]) -> str:
    """Why a column may be missing: the file is not comma-separated, or the name is spelt differently."""
    if len(columns) == 1:
        for delimiter, called in ((";", "semicolons"), ("\t", "tabs"), ("|", "'|'")):
            if delimiter in columns[0]:
                return (f" (one column: the file seems separated by {called}, but mlcli reads "
                        "comma-separated CSV — save it with commas)")
    near = [c for c in columns if c.strip().lower() == name.strip().lower()]
    near = near or difflib.get_close_matches(name, columns, n=1, cutoff=0.8)
    return f"; did you mean {near[0]!r}?" if near else ""


def listing(columns: list[str], limit: int = 12) -> str:
    shown = ", ".join(columns[:limit])
    return shown + (f", … ({len(columns)} in all)" if len(columns) > limit else "")
