"""A typed feature's values as the model takes them, from an Arrow column of any reader.

Every reader (training's in-memory table, evaluate and predict in batches) converts typed columns
through `model_input`, so a value means the same thing everywhere:

- numeric: float32 (rows, 1); a missing value is NaN (the model fills it by its policy)
- categorical, binary: text (rows, 1) — the value as text, one spelling whatever the file's type
  (7, 7.0 and "7" are "7"; True and "true" are "true"); a missing value is ""
- text: text (rows, 1); a missing value is ""
- date: float32 (rows, 4) — year, month, day, day of week (Monday 0); a missing date is a NaN row

Typed features keep a row's values together as a dict {column: array}; `row_count` and `take_rows`
work on either a float matrix (the plain path) or such a dict.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from mlcli.data.feature_types import ISO_DATE, FeaturePlan
from mlcli.data.sources import Source
from mlcli.data.values import as_numbers, check_finite
from mlcli.errors import DataError

DATE_PARTS = ("year", "month", "day", "day_of_week")


def row_count(x) -> int:
    if isinstance(x, dict):
        return len(next(iter(x.values())))
    return int(x.shape[0])


def take_rows(x, index):
    if isinstance(x, dict):
        return {name: values[index] for name, values in x.items()}
    return x[index]


def concat_rows(parts: list):
    if parts and isinstance(parts[0], dict):
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    return np.concatenate(parts)


def model_input(column, plan: FeaturePlan, source: Source, role: str, row_offset: int = 0) -> np.ndarray:
    """One column's values as the model's input of that name (see the module docstring)."""
    import pyarrow as pa  # deferred: imports pyarrow

    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if plan.type == "numeric":
        return _numbers(column, plan.name, source, role, row_offset)
    if plan.type == "date":
        return _date_parts(column, plan, source, role, row_offset)
    if plan.type == "text":
        return _text(column).reshape(-1, 1)
    return category_text(column, plan.kind).reshape(-1, 1)


def missing_rows(values: np.ndarray, plan: FeaturePlan) -> np.ndarray:
    """True for the rows where this feature's value is missing."""
    if plan.type in ("numeric", "date"):
        return np.isnan(values[:, 0])
    return values[:, 0] == ""


def check_missing(x: dict, plans: list[FeaturePlan], source: Source, role: str, row_offset: int = 0) -> None:
    """A missing value of a feature whose policy is error: exit 3 naming the column and row."""
    for plan in plans:
        if plan.missing != "error":
            continue
        missing = missing_rows(x[plan.name], plan)
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise DataError(f"{role}: {source.spec}: column {plan.name!r}, row {row + 1 + row_offset}: missing value "
                            "— the feature's missing policy is error",
                            hint="fill the value, or set data.missing (or the feature's missing:) to auto, drop or a fill")


def rows_to_drop(x: dict, plans: list[FeaturePlan]) -> tuple[np.ndarray, dict[str, int]]:
    """(True for each row missing a value of a `missing: drop` feature, count by column)."""
    rows = row_count(x)
    drop = np.zeros(rows, dtype=bool)
    counts: dict[str, int] = {}
    for plan in plans:
        if plan.missing == "drop":
            missing = missing_rows(x[plan.name], plan)
            if missing.any():
                counts[plan.name] = int(missing.sum())
                drop |= missing
    return drop, counts


# ---- numbers ----------------------------------------------------------------------------------

def _numbers(column, name: str, source: Source, role: str, row_offset: int) -> np.ndarray:
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.compute as pc  # deferred: imports pyarrow

    column = as_numbers(column)
    if pa.types.is_null(column.type):
        return np.full((len(column), 1), np.nan, dtype=np.float32)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        values = _parse_numbers(column.to_pylist(), name, source, role, row_offset)
    else:
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, reported below
        out = values.astype(np.float32).reshape(-1, 1)
    check_finite(np.where(np.isnan(out), 0.0, out), [name], source, role, row_offset)
    return out


def _parse_numbers(values: list, name: str, source: Source, role: str, row_offset: int) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float64)
    for row, value in enumerate(values):
        if value is None or not value.strip():
            out[row] = np.nan
            continue
        try:
            out[row] = float(value)
        except ValueError:
            raise DataError(f"{role}: {source.spec}: column {name!r}, row {row + 1 + row_offset}: {value!r} is not a "
                            "number — the column is numeric",
                            hint=f"fix the value, or declare {{name: {name}, type: categorical}} (or text) if the "
                            "column holds words") from None
    return out


# ---- categories and text ----------------------------------------------------------------------

def category_text(column, kind: str) -> np.ndarray:
    """A category's values as text, one spelling per value whatever the file's type; missing is "".

    `kind` is how the training file held the column: text from a CSV read in batches (evaluate,
    predict) is spelt as training's typed values were (an int column's "007" is "7")."""
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.compute as pc  # deferred: imports pyarrow

    kind_of = column.type
    if pa.types.is_null(kind_of):
        return np.full(len(column), "", dtype=object)
    if pa.types.is_floating(kind_of) or pa.types.is_decimal(kind_of):
        return np.asarray([_number_text(v) for v in pc.cast(column, pa.float64()).to_pylist()], dtype=object)
    if not (pa.types.is_string(kind_of) or pa.types.is_large_string(kind_of)):
        return _filled(pc.cast(column, pa.string()))  # bool -> true/false, int -> 7, date -> 2024-01-31
    text = pc.utf8_trim_whitespace(column)
    if kind == "bool":
        lowered = pc.utf8_lower(text)
        text = pc.if_else(pc.is_in(lowered, pa.array(["true", "false"])), lowered, text)
    elif kind in ("int", "float"):
        as_int = _try_cast(text, pa.int64()) if kind == "int" else None
        if as_int is not None:
            return _filled(pc.cast(as_int, pa.string()))
        return np.asarray([_number_spelling(v) for v in text.to_pylist()], dtype=object)
    return _filled(text)


def _text(column) -> np.ndarray:
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.compute as pc  # deferred: imports pyarrow

    if pa.types.is_null(column.type):
        return np.full(len(column), "", dtype=object)
    return _filled(pc.cast(column, pa.string()))


def _filled(text) -> np.ndarray:
    import pyarrow.compute as pc  # deferred: imports pyarrow

    return np.asarray(pc.fill_null(text, "").to_pylist(), dtype=object)


def _number_text(value: float | None) -> str:
    if value is None or value != value:  # missing, or NaN
        return ""
    return str(int(value)) if value.is_integer() else repr(value)


def _number_spelling(text: str | None) -> str:
    """Text spelt as training's numbers were ("7.0" -> "7"); text that is not a number stays as it is."""
    if not text:
        return ""
    try:
        return _number_text(float(text))
    except ValueError:
        return text


def _try_cast(column, target):
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.compute as pc  # deferred: imports pyarrow

    try:
        return pc.cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


# ---- dates ------------------------------------------------------------------------------------

def _date_parts(column, plan: FeaturePlan, source: Source, role: str, row_offset: int) -> np.ndarray:
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.compute as pc  # deferred: imports pyarrow

    kind = column.type
    rows = len(column)
    out = np.full((rows, len(DATE_PARTS)), np.nan, dtype=np.float32)
    if pa.types.is_null(kind):
        return out
    if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
        present = pc.is_valid(column).to_numpy(zero_copy_only=False)
        parts = [pc.year(column), pc.month(column), pc.day(column), pc.day_of_week(column)]
        for j, part in enumerate(parts):
            out[present, j] = pc.drop_null(part).to_numpy(zero_copy_only=False)
        return out
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataError(f"{role}: {source.spec}: column {plan.name!r} holds {kind} values, not dates",
                        hint="dates are read from text such as 2024-01-31 (or in the feature's format:)")
    text = np.asarray(pc.fill_null(pc.utf8_trim_whitespace(column), "").to_pylist(), dtype=object)
    fmt = plan.options.get("format")
    for value in set(text.tolist()) - {""}:
        parsed = _parse_date(value, fmt)
        if parsed is None:
            row = int(np.flatnonzero(text == value)[0])
            expected = f"the format {fmt!r}" if fmt else "an ISO 8601 date such as 2024-01-31"
            raise DataError(f"{role}: {source.spec}: column {plan.name!r}, row {row + 1 + row_offset}: {value!r} is not "
                            f"a date — expected {expected}",
                            hint="fix the value, or give the feature's format: (a strptime format such as %d/%m/%Y)")
        out[text == value] = (parsed.year, parsed.month, parsed.day, parsed.weekday())
    return out


def _parse_date(value: str, fmt: str | None) -> dt.date | None:
    try:
        if fmt:
            return dt.datetime.strptime(value, fmt).date()
        if not ISO_DATE.match(value):
            return None
        return dt.datetime.fromisoformat(value).date()
    except ValueError:
        return None
