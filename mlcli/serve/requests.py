"""A predict request's body -> a table of rows, or a BadRequest naming what is wrong (docs/contract.md §9).

TensorFlow Serving's REST shapes: `{"instances": [{column: value, ...}, ...]}` (rows) or
`{"inputs": {column: [values]}}` (columns). Values are what a table cell holds: a number, text,
true/false, or null (missing); `{"b64": "..."}` is bytes (base64, as TensorFlow Serving writes
binary values) — an image file's bytes for an image model, in the column "image" (an instance that
is only {"b64": "..."} is that column's value). The table has the columns by name, as a
file would, and is then read and checked by the same reader as `mlcli predict`'s input
(mlcli.data.inputs.InputReader), so a bad value is named the same way: its column and its row.

Nothing here imports TensorFlow; pyarrow is imported where a table is built.
"""

from __future__ import annotations

import base64
import binascii
import json

MAX_BODY = 10 * 1024 * 1024  # bytes; --max-body. 10 MiB is ~40,000 rows of the seed's 64 pixels as JSON
SHAPES = ("instances", "inputs")
IMAGE_COLUMN = "image"  # an image model's one column: each image file's bytes, {"b64": "..."}
IGNORED_KEYS = ("signature_name",)  # TensorFlow Serving clients send it; there is one signature


class BadRequest(Exception):
    """A request the server refuses: HTTP `status` (400, 404, 413) with {"error": message}."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def parse_body(body: bytes) -> tuple[str, object]:
    """(the shape used, "instances" or "inputs"; the rows as a pyarrow Table)."""
    try:
        document = json.loads(body, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(document, dict):
        raise BadRequest(f"the body is a JSON {_kind(document)} — expected an object "
                         '{"instances": [{column: value, ...}, ...]} or {"inputs": {column: [values, ...]}}')
    given = [key for key in SHAPES if key in document]
    unknown = [key for key in document if key not in SHAPES and key not in IGNORED_KEYS]
    if unknown:
        raise BadRequest(f"unknown key {unknown[0]!r} in the body — expected \"instances\" or \"inputs\"")
    if len(given) != 1:
        raise BadRequest('the body needs exactly one of "instances" (rows) and "inputs" (columns)'
                         + (", not both" if given else ""))
    shape = given[0]
    columns = _from_instances(document[shape]) if shape == "instances" else _from_inputs(document[shape])
    return shape, _table(columns, shape)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value (send null for a missing value)")


def _from_instances(instances) -> dict[str, list]:
    if not isinstance(instances, list):
        raise BadRequest(f'"instances" is a JSON {_kind(instances)} — expected a list of rows, '
                         "each an object {column: value}")
    if not instances:
        raise BadRequest('"instances" is empty — send at least one row')
    names: dict[str, None] = {}
    instances = [_image_instance(row) for row in instances]
    for i, row in enumerate(instances):
        if not isinstance(row, dict):
            raise BadRequest(f"instances: row {i + 1} is a JSON {_kind(row)} — expected an object {{column: value}}")
        names.update(dict.fromkeys(row))
    # A column a row leaves out is a missing value in that row (null), as an empty CSV cell is.
    return {name: [row.get(name) for row in instances] for name in names}


def _image_instance(row):
    """An instance that is one file's bytes, {"b64": "..."} (TensorFlow Serving's binary value), is the
    row {"image": {"b64": "..."}}: the image column of an image model."""
    if isinstance(row, dict) and list(row) == ["b64"]:
        return {IMAGE_COLUMN: row}
    return row


def _from_inputs(inputs) -> dict[str, list]:
    if not isinstance(inputs, dict):
        raise BadRequest(f'"inputs" is a JSON {_kind(inputs)} — expected an object {{column: [values, ...]}}')
    if not inputs:
        raise BadRequest('"inputs" is empty — send at least one column')
    lengths = {}
    for name, values in inputs.items():
        if not isinstance(values, list):
            raise BadRequest(f"inputs: column {name!r} is a JSON {_kind(values)} — expected a list of values, "
                             "one per row")
        lengths[name] = len(values)
    if len(set(lengths.values())) > 1:
        first, *_ = lengths
        other = next(name for name in lengths if lengths[name] != lengths[first])
        raise BadRequest(f"inputs: column {other!r} has {lengths[other]} value(s) but column {first!r} has "
                         f"{lengths[first]} — every column needs one value per row")
    if not next(iter(lengths.values())):
        raise BadRequest('"inputs" has no rows — send at least one value per column')
    return dict(inputs)


def _table(columns: dict[str, list], shape: str):
    """The columns as a pyarrow Table. A column mixing kinds (numbers and text) becomes text, so the
    reader names the first value that is not what the model takes, as it does for a CSV cell."""
    import pyarrow as pa  # deferred: imports pyarrow

    arrays = _by_kind(columns)
    for name, values in columns.items():
        if name not in arrays:
            values = [_cell(value, name, row, shape) for row, value in enumerate(values)]
            arrays[name] = _array(values, name, shape)
    return pa.Table.from_arrays([arrays[name] for name in columns], names=list(columns))


_KINDS = {frozenset({int}): "int64", frozenset({float}): "float64", frozenset({int, float}): "float64",
          frozenset({str}): "string"}


def _by_kind(columns: dict[str, list]) -> dict:
    """The columns that hold only integers, only numbers or only text (and nulls), converted one kind
    at a time: a single pyarrow call for all 64 columns of a digits row instead of 64 (each call costs
    more than the values). Every other column is left to `_table`'s value-by-value path."""
    import pyarrow as pa  # deferred: imports pyarrow

    groups: dict[str, list[str]] = {}
    for name, values in columns.items():
        types = set(map(type, values))
        types.discard(type(None))
        kind = _KINDS.get(frozenset(types))
        if kind is not None:
            groups.setdefault(kind, []).append(name)
    arrays = {}
    for kind, names in groups.items():
        rows = len(columns[names[0]])
        try:
            flat = pa.array([v for name in names for v in columns[name]], type=kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # an integer past int64: value by value
            continue
        arrays.update((name, flat.slice(i * rows, rows)) for i, name in enumerate(names))
    return arrays


def _cell(value, name: str, row: int, shape: str):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict) and list(value) == ["b64"] and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"{shape}: column {name!r}, row {row + 1}: \"b64\" is not base64 text") from None
    raise BadRequest(f"{shape}: column {name!r}, row {row + 1}: a JSON {_kind(value)} — expected a number, text, "
                     'true/false, null (missing) or {"b64": "..."} (bytes)')


def _array(values: list, name: str, shape: str):
    import pyarrow as pa  # deferred: imports pyarrow

    given = [v for v in values if v is not None]
    if any(isinstance(v, bytes) for v in given):
        if not all(isinstance(v, bytes) for v in given):
            raise BadRequest(f"{shape}: column {name!r} mixes {{\"b64\": ...}} bytes with other values — "
                             "a column holds one kind")
        return pa.array(values, type=pa.binary())
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        return pa.array([_text(v) for v in values], type=pa.string())


def _text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _kind(value) -> str:
    return {dict: "object", list: "list", str: "string", bool: "true/false", type(None): "null"}.get(
        type(value), "number")
