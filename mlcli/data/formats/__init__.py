"""Source formats: one module per format, registered below by file suffix.

A tabular format (csv, parquet) offers what the three readers use (mlcli.data.frames in memory,
mlcli.data.stream_source for data.stream, mlcli.data.inputs for evaluate and predict):

    NAME, TABULAR = True
    read_table(path, role)                the whole file as a pyarrow Table
    header(path, role, name)              the column names, no rows read (`name`: the file in messages)
    units(path)                           [(row group or None, rows before it)]: what data.stream reads
                                          (and shuffles) one at a time
    chunks(path, needed, row_group)       data.stream: Arrow tables of the `needed` columns
    batches(path, header, needed, numeric, batch_rows)   evaluate/predict: the same, `numeric`
                                          columns parsed as numbers where the format can

An array format (npz) offers `read_arrays(path, role)` instead: named arrays, read whole.
Every format also offers `declared(path, role, up_to)`: its data's size once decompressed, from
what the file declares (a compressed stream is counted, no further than `up_to` bytes), and the
memory reading it whole takes (mlcli.limits.Declared); read_table and read_arrays refuse a file
that would not fit before reading it.
Every failure is a DataError naming the file. A new format: its module, and a line in BY_SUFFIX.
"""

from __future__ import annotations

from pathlib import Path

from mlcli.data.formats import csv, npz, parquet
from mlcli.errors import DataError

BY_SUFFIX = {".csv": csv, ".gz": csv, ".parquet": parquet, ".pq": parquet, ".npz": npz}

_BY_NAME = {module.NAME: module for module in BY_SUFFIX.values()}


def named(name: str):
    """The module of a format by its name (a Source's `format`)."""
    return _BY_NAME[name]


def of_file(path: Path, role: str):
    """The module that reads `path`, by its suffix."""
    suffix = path.suffix.lower()
    if suffix not in BY_SUFFIX:
        raise DataError(f"{role}: {path}: unknown file type {suffix or '(none)'!r} — expected {expected()}")
    return BY_SUFFIX[suffix]


def expected() -> str:
    """The suffixes a data file may have, for messages: `.csv, .parquet or .npz`."""
    first = list(dict.fromkeys(f".{module.NAME}" for module in BY_SUFFIX.values()))
    return ", ".join(first[:-1]) + " or " + first[-1]
