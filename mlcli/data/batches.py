"""Reading CSV in batches, and turning a batch's columns into checked numbers and labels.

CSV columns are read as text and converted batch by batch: pyarrow infers a column's type from its
first block, so a column that starts with integers would fail on its first decimal a million rows
later. Values that Arrow cannot parse go through the same per-value reading as training's loader
(frames.numeric_column), so the messages name the same column and row.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sys
from pathlib import Path

import numpy as np

from mlcli.data.sources import Source
from mlcli.errors import DataError

CSV_BLOCK_BYTES = 2 << 20  # ~4,400 rows of 64 features; files are read 4 blocks at a time, little memory


def csv_batches(path: Path | None, header: list[str] | None, needed: list[str], numeric: list[str] = ()):
    """Tables of the `needed` columns, in file order; `path` None reads stdin after `header`.

    A file is read in chunks of a few blocks cut at row ends, each parsed by Arrow on every core,
    with the `numeric` columns (the features) parsed straight into float64 and the others as text.
    Any problem Arrow reports (a value that is not a number, a ragged row) stops that fast read: the
    rest of the file, from the first row not yet handed out, is read again as text by Arrow's
    streaming reader, where the per-value checks name the bad value, its column and its row. stdin
    cannot be read twice, so it is always read that way.
    """
    import pyarrow as pa

    if path is None or not numeric:
        yield from _csv_reader(path, header, needed, ())
        return
    done = 0
    try:
        for table in _parallel_csv(path, needed, numeric):
            done += table.num_rows
            yield table
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


def _convert_options(needed: list[str], numeric):
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = {c: pa.string() for c in needed}
    types.update({c: pa.float64() for c in numeric if c in types})
    return pacsv.ConvertOptions(include_columns=needed, column_types=types, strings_can_be_null=True)


def _parallel_csv(path: Path, needed: list[str], numeric):
    """Arrow's multi-threaded reader over chunks of ~4 blocks: the streaming reader parses on one
    core only. Chunks end at a row end outside quotes, so each parses on its own, as Arrow's own
    reader splits a file into blocks."""
    import gzip

    import pyarrow as pa
    import pyarrow.csv as pacsv

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rb") as handle:
        names = read_header(handle, Source(str(path), (path,), "csv"), "input")
        options = pacsv.ReadOptions(column_names=names, block_size=CSV_BLOCK_BYTES, use_threads=True)
        convert = _convert_options(needed, numeric)
        rest = b""
        while True:
            data = handle.read(4 * CSV_BLOCK_BYTES)
            if not data:
                break
            data = rest + data
            cut = _row_end(data)
            if cut < 0:  # no whole row yet: read on
                rest = data
                continue
            chunk, rest = data[:cut + 1], data[cut + 1:]
            if not chunk.isspace():
                yield pacsv.read_csv(pa.py_buffer(chunk), read_options=options, convert_options=convert)
        if rest and not rest.isspace():
            yield pacsv.read_csv(pa.py_buffer(rest), read_options=options, convert_options=convert)


def _row_end(data: bytes) -> int:
    """The index of the last newline of `data` that is outside quotes (an even number of quote
    characters before it, "" escapes included), or -1."""
    cut = data.rfind(b"\n")
    if cut < 0:
        return -1
    quotes = data.count(b'"', 0, cut)
    while quotes % 2:
        previous = cut
        cut = data.rfind(b"\n", 0, previous)
        if cut < 0:
            return -1
        quotes -= data.count(b'"', cut, previous)
    return cut


def _csv_reader(path: Path | None, header: list[str] | None, needed: list[str], numeric):
    import pyarrow as pa
    import pyarrow.csv as pacsv

    convert = _convert_options(needed, numeric)
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


def prefetch(items, depth: int = 2):
    """`items`, produced by a background thread up to `depth` ahead of the consumer.

    Arrow's streaming CSV reader parses on one core; with the next batch read and converted in a
    thread (pyarrow and numpy release the GIL) while this one is predicted and written, a 2-core
    machine does both at once. Memory stays bounded: at most `depth` batches wait. An error in the
    producer is raised in the consumer, at the batch where it happened.
    """
    import queue
    import threading

    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as exc:  # noqa: BLE001 — handed to the consumer, raised there
            put((None, exc))

    thread = threading.Thread(target=produce, name="mlcli-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def in_background(consume, depth: int = 2):
    """A `submit(item)` that hands items to `consume` on a background thread, in order.

    At most `depth` items wait (memory stays bounded). An error in `consume` is raised by the next
    submit or on leaving the block; leaving the block waits until every item is consumed.
    """
    import queue
    import threading

    slots: queue.Queue = queue.Queue(maxsize=depth)
    end = object()
    failed: list[BaseException] = []

    def work() -> None:
        while True:
            item = slots.get()
            if item is end:
                return
            if not failed:
                try:
                    consume(item)
                except BaseException as exc:  # noqa: BLE001 — raised in the submitting thread
                    failed.append(exc)

    def submit(item) -> None:
        if failed:
            raise failed[0]
        slots.put(item)

    thread = threading.Thread(target=work, name="mlcli-writer", daemon=True)
    thread.start()
    try:
        yield submit
    finally:
        slots.put(end)
        thread.join()
    if failed:
        raise failed[0]
