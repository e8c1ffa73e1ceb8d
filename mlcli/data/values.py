"""An Arrow column's values, checked: features as numbers, labels as the kind they are compared as.

Every reader (in memory, data.stream, evaluate/predict) converts through these functions, so a bad
value is named the same way everywhere: its column and its row (`row_offset`: rows before this batch,
so a batch-wise reader names the row in the whole file).
"""

from __future__ import annotations

import numpy as np

from mlcli.data.labels import non_finite_label
from mlcli.data.sources import Source
from mlcli.errors import DataError

# Label kinds, weakest last: a CSV label column is int if every value is, else float, else text.
_KINDS = ("bool", "int", "float", "str")


# ---- features --------------------------------------------------------------------------------


def numeric_column(column, name: str, source: Source, role: str, row_offset: int = 0,
                   rows: np.ndarray | None = None) -> np.ndarray:
    """A column as float64, or a DataError naming the first row that is missing or not a number.

    `rows`: for a column of some of a file's rows (the others dropped), each value's row in the file."""
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.compute as pc  # deferred: imports pyarrow

    kind = column.type
    if column.null_count:
        row = _file_row(int(pc.index(pc.is_null(column), True).as_py()), rows)
        raise DataError(
            f"{role}: {source.spec}: column {name!r}, row {row + 1 + row_offset}: missing or NaN value — "
            "every feature needs a number (fill or drop the row)",
            hint=("to train with missing values, set data.missing: median (or mean, most_frequent, drop)"
                  if role.startswith("data.") else None),
        )
    if pa.types.is_boolean(kind):  # True/False as 1/0, the same in every reader (Arrow has no zero-copy view)
        return pc.cast(column, pa.float64()).to_numpy()
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return as_numpy(column).astype(np.float64, copy=False)
    if pa.types.is_decimal(kind):
        return pc.cast(column, pa.float64()).to_numpy()
    values = column.to_pylist()
    out = np.empty(len(values), dtype=np.float64)
    for row, value in enumerate(values):
        try:
            out[row] = float(value)
        except (TypeError, ValueError):
            raise DataError(
                f"{role}: {source.spec}: column {name!r}, row {_file_row(row, rows) + 1 + row_offset}: {value!r} is "
                "not a number — "
                "features must be numeric (encode categories as numbers, or list data.features without this column)"
            ) from None
    return out


def float_matrix(table, names: list[str], source: Source, role: str, rows: np.ndarray | None = None) -> np.ndarray:
    """The `names` columns of `table` as one float32 matrix (rows, features), every value checked as
    numeric_column checks it (values beyond float32 become inf: check_finite reports them).

    Columns of plain numbers (integers, floats; no missing value) are copied block by block: a block of
    rows gathered as float64 in a small buffer, then cast into its rows of the matrix, so no column is
    ever concatenated or written with a stride across the whole matrix. Other columns go through
    numeric_column one by one. Either way a value is float64 before it is float32 (int64 -> float64 ->
    float32), as numeric_column makes it."""
    x = np.empty((table.num_rows, len(names)), dtype=np.float32)
    columns = [table.column(name) for name in names]
    with np.errstate(over="ignore"):
        if columns and _aligned_numbers(columns):
            start = 0
            for index in range(columns[0].num_chunks):
                length = len(columns[0].chunk(index))
                if not length:
                    continue
                block = np.empty((length, len(columns)), dtype=np.float64)
                for j, column in enumerate(columns):
                    block[:, j] = _values(column.chunk(index))
                x[start:start + length] = block
                start += length
            return x
        for j, name in enumerate(names):
            x[:, j] = numeric_column(columns[j], name, source, role, rows=rows)
    return x


def _aligned_numbers(columns) -> bool:
    """Every column integers or floats without a missing value, all cut into the same chunks (as one
    file's columns are)."""
    import pyarrow as pa  # deferred: imports pyarrow

    lengths = [len(chunk) for chunk in columns[0].chunks]
    return all((pa.types.is_integer(c.type) or pa.types.is_floating(c.type)) and c.null_count == 0
               and [len(chunk) for chunk in c.chunks] == lengths for c in columns)


def as_numpy(column) -> np.ndarray:
    """An Arrow array or chunked array as NumPy. Plain numbers without a missing value are read from
    their buffers: pyarrow's own to_numpy imports pandas (about 50 MB), which nothing here needs."""
    import pyarrow as pa  # deferred: imports pyarrow

    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    kind = column.type
    if column.null_count or not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        return column.to_numpy(zero_copy_only=False) if isinstance(column, pa.Array) else column.to_numpy()
    if len(chunks) == 1:
        return _values(chunks[0])
    if not chunks:
        return np.empty(0, dtype=np.dtype(kind.to_pandas_dtype()))
    return np.concatenate([_values(chunk) for chunk in chunks])


def _values(chunk) -> np.ndarray:
    """A fixed-width Arrow array without nulls: its values buffer viewed as NumPy (no copy)."""
    dtype = np.dtype(chunk.type.to_pandas_dtype())
    return np.frombuffer(chunk.buffers()[1], dtype=dtype, count=len(chunk), offset=chunk.offset * dtype.itemsize)


def _file_row(position: int, rows: np.ndarray | None) -> int:
    return position if rows is None else int(rows[position])


def as_numbers(column):
    """A CSV text column as float64 when Arrow can parse every value; else unchanged, so
    numeric_column's per-value reading names the first bad row exactly as the in-memory reader does."""
    import pyarrow as pa  # deferred: imports pyarrow

    if not _is_text(column):
        return column
    for kind in (pa.float64(), pa.bool_()):  # CSV readers take true/false columns as booleans
        cast = _cast(column, kind)
        if cast is not None:
            return cast
    return column


def check_text(column, name: str, source: Source, role: str, row_offset: int = 0) -> None:
    """pyarrow reads text that is not UTF-8 as raw bytes: say so, naming the first bad row."""
    import pyarrow as pa  # deferred: imports pyarrow

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


def check_finite(x: np.ndarray, names: list[str], source: Source, role: str, row_offset: int = 0,
                 rows: np.ndarray | None = None) -> None:
    finite = np.isfinite(x)
    if finite.all():
        return
    bad = np.argwhere(~finite.reshape(len(x), -1))[0]
    row, col = _file_row(int(bad[0]), rows), int(bad[1])
    value = x.reshape(len(x), -1)[int(bad[0]), col]
    name = names[col] if len(names) > col else f"feature {col}"
    what = "NaN" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    note = " (or a value too large for float32)" if np.isinf(value) else ""
    raise DataError(
        f"{role}: {source.spec}: column {name!r}, row {row + 1 + row_offset}: {what}{note} in the features — "
        "features must be finite numbers (fill or drop the row)"
    )


# ---- labels ----------------------------------------------------------------------------------


def check_labels_present(column, name: str, source: Source, role: str, row_offset: int = 0) -> None:
    """Every row has a label, and a number label is finite (NaN and inf are no class and no target)."""
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.compute as pc  # deferred: imports pyarrow

    if column.null_count:
        row = int(pc.index(pc.is_null(column), True).as_py())
        raise DataError(f"{role}: {source.spec}: label column {name!r}, row {row + 1 + row_offset}: missing label")
    if pa.types.is_floating(column.type):
        finite = pc.is_finite(column)
        if not pc.all(finite).as_py():
            row = int(pc.index(finite, False).as_py())
            raise non_finite_label(f"{role}: {source.spec}", name, row + 1 + row_offset, column[row].as_py())


def label_missing(column) -> np.ndarray:
    """True where a label is missing: null, or an empty string (Arrow's CSV reader gives "" for an
    empty cell of a text column)."""
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.compute as pc  # deferred: imports pyarrow

    missing = pc.is_null(column)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        missing = pc.or_(missing, pc.fill_null(pc.equal(pc.utf8_trim_whitespace(column), ""), False))
    if pa.types.is_floating(column.type):
        missing = pc.or_(missing, pc.fill_null(pc.is_nan(column), False))
    return missing.to_numpy(zero_copy_only=False)


def label_values(column, name: str, task: str, classes: list | None, source: Source, role: str,
                 row_offset: int) -> np.ndarray:
    """Labels as Python-typed values comparable with the run's vocabulary (CSV gives text)."""
    check_labels_present(column, name, source, role, row_offset)
    return labels_as(column, class_kind(classes) if task == "classification" else "float")


def labels_as(column, kind: str | None) -> np.ndarray:
    """A label column's values: as typed (Parquet), or CSV text read as `kind` (int, float, bool, str),
    or as the weakest kind that fits this column when `kind` is None."""
    import pyarrow as pa  # deferred: imports pyarrow

    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if not _is_text(column):
        values = column.to_numpy(zero_copy_only=False)
        return values.astype(object) if values.dtype.kind in "US" else values
    kind = kind or column_kind(column)
    targets = {"int": (pa.int64(), pa.float64()), "float": (pa.float64(),), "bool": (pa.bool_(),)}.get(kind, ())
    for target in targets:
        cast = _cast(column, target)
        if cast is not None:
            return cast.to_numpy(zero_copy_only=False)
    return np.asarray(column.to_pylist(), dtype=object)  # text; a lookup names any value that fits nothing


def number_kind(kind) -> str | None:
    """bool, int or float for an Arrow type of true/false values or numbers, else None."""
    import pyarrow as pa  # deferred: imports pyarrow

    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_integer(kind):
        return "int"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "float"
    return None


def column_kind(column) -> str:
    """The label kind of an Arrow column: its type, or for CSV text the weakest kind every value fits."""
    import pyarrow as pa  # deferred: imports pyarrow

    if number_kind(column.type) is not None:
        return number_kind(column.type)
    if not _is_text(column):
        return "str"
    for name, target in (("int", pa.int64()), ("float", pa.float64())):
        if _cast(column, target) is not None:
            return name
    return "str"


def class_kind(classes: list | None) -> str:
    """The kind of a run's vocabulary: how CSV text labels are read to be compared with it."""
    if classes and all(isinstance(c, bool) for c in classes):
        return "bool"
    if classes and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "int"
    if classes and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
        return "float"
    return "str"


def weakest(kinds) -> str:
    return max(kinds, key=_KINDS.index) if kinds else "str"


def _is_text(column) -> bool:
    import pyarrow as pa  # deferred: imports pyarrow

    return pa.types.is_string(column.type) or pa.types.is_large_string(column.type)


def _cast(column, target):
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.compute as pc  # deferred: imports pyarrow

    try:
        return pc.cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
