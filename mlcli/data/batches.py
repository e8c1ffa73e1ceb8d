"""Reading CSV in batches, and turning a batch's columns into checked numbers and labels.

CSV columns are read as text and converted batch by batch: pyarrow infers a column's type from its
first block, so a column that starts with integers would fail on its first decimal a million rows
later. Values that Arrow cannot parse go through the same per-value reading as training's loader
(frames.numeric_column), so the messages name the same column and row.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np

from mlcli.data.sources import Source
from mlcli.errors import DataError

CSV_BLOCK_BYTES = 2 << 20  # ~10k rows of 64 features per batch: few Python round trips, little memory


def csv_batches(path: Path | None, header: list[str] | None, needed: list[str], numeric: list[str] = ()):
    """Record batches of the `needed` columns; `path` None reads stdin after `header`.

    Columns in `numeric` (the features) are parsed by Arrow straight into float64, a third faster
    than text then a cast; every other column is text. A value Arrow cannot parse as a number stops
    that fast read: the rest of the file, from the first row not yet handed out, is read again as
    text, where the per-value checks name the bad value, its column and its row exactly as before.
    stdin cannot be read twice, so it is always read as text.
    """
    import pyarrow as pa

    if path is None or not numeric:
        yield from _csv_reader(path, header, needed, ())
        return
    done = 0
    try:
        for batch in _csv_reader(path, header, needed, numeric):
            done += batch.num_rows
            yield batch
        return
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    skip = done
    for batch in _csv_reader(path, header, needed, ()):
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        if skip:
            batch, skip = batch.slice(skip), 0
        yield batch


def _csv_reader(path: Path | None, header: list[str] | None, needed: list[str], numeric):
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = {c: pa.string() for c in needed}
    types.update({c: pa.float64() for c in numeric if c in types})
    convert = pacsv.ConvertOptions(include_columns=needed, column_types=types, strings_can_be_null=True)
    if path is None:  # stdin: the header line is already read
        options = pacsv.ReadOptions(column_names=header, block_size=CSV_BLOCK_BYTES)
        try:
            reader = pacsv.open_csv(sys.stdin.buffer, read_options=options, convert_options=convert)
        except pa.ArrowInvalid as exc:
            if "Empty CSV" in str(exc):
                return  # a header and no rows: nothing to predict
            raise
    else:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                                convert_options=convert)
    yield from reader


def read_header(stream, source: Source, role: str) -> list[str]:
    """The header record (quoted newlines allowed), read line by line so a stream can go on after it."""
    raw = b""
    while True:
        line = stream.readline()
        raw += line
        if not line or raw.count(b'"') % 2 == 0:
            break
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{role}: {source.spec}: cannot be read as CSV: {exc} — save the file as UTF-8") from None
    names = next(csv.reader(io.StringIO(text)), [])
    if not names:
        raise DataError(f"{role}: {source.spec}: is empty — expected a header row naming the columns, then data rows")
    return names


def as_numbers(column):
    """A CSV text column as float64 when Arrow can parse every value; else unchanged, so
    numeric_column's per-value reading names the first bad row exactly as training's reader does."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column
    for kind in (pa.float64(), pa.bool_()):  # CSV readers take true/false columns as booleans
        try:
            return pc.cast(column, kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return column


def label_values(column, name: str, task: str, classes: list | None, source: Source, role: str,
                  offset: int) -> np.ndarray:
    """Labels as Python-typed values comparable with the run's vocabulary (CSV gives text)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        row = int(pc.index(pc.is_null(column), True).as_py())
        raise DataError(f"{role}: {source.spec}: label column {name!r}, row {row + 1 + offset}: missing label")
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        targets = []
        if task != "classification":
            targets = [pa.float64()]
        elif classes and all(isinstance(c, bool) for c in classes):
            targets = [pa.bool_()]
        elif classes and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
            targets = [pa.int64(), pa.float64()]
        elif classes and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
            targets = [pa.float64()]
        for kind in targets:
            try:
                return pc.cast(column, kind).to_numpy(zero_copy_only=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        return np.asarray(column.to_pylist(), dtype=object)
    return column.to_numpy(zero_copy_only=False)
