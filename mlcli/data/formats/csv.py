"""CSV files, plain or gzipped (pyarrow): read whole, by header, or in batches of rows.

Read in batches (data.stream, evaluate, predict), columns come as text and are converted batch by
batch (mlcli.data.values): pyarrow infers a column's type from its first block, so a column that
starts with integers would fail on its first decimal a million rows later.
"""

from __future__ import annotations

import contextlib
import csv  # the standard library's: imports are absolute
import gzip
import io
import mmap
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from mlcli import limits
from mlcli.data.formats.tables import header_errors, read_whole
from mlcli.errors import DataError

NAME = "csv"
TABULAR = True
CSV_BLOCK_BYTES = 2 << 20  # ~4,400 rows of 64 features; files are read 4 blocks at a time, little memory
HEADER_BYTES = 16 << 20  # the longest header row read (~500,000 column names)
# Read whole, text takes up to ~4 times its size: Arrow's 8 bytes a number for "0," or "0.5,", then
# the float32 features.
TEXT_MEMORY_FACTOR = 4


@dataclass(frozen=True)
class Dialect:
    """data.csv (docs/contract.md §6): how the CSV files of a run are written."""

    delimiter: str = ","
    decimal: str = "."
    encoding: str = "utf-8"

    @classmethod
    def of(cls, data) -> Dialect:
        """A config's data section's dialect (data.csv)."""
        spec = getattr(data, "csv", None)
        return cls(spec.delimiter, spec.decimal, spec.encoding) if spec is not None else cls()

    def describe(self) -> str:
        return f"delimiter {self.delimiter!r}, decimal {self.decimal!r}, encoding {self.encoding}"


# The dialect every CSV read in this command follows. A process-wide value rather than a ContextVar:
# CSV is also read in a prefetch thread (evaluate, predict) and in tf.data's generator threads
# (data.stream), which do not inherit a context. One command runs at a time; `use_dialect` restores it.
_ACTIVE = Dialect()


@contextlib.contextmanager
def use_dialect(dialect: Dialect):
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, dialect
    try:
        yield dialect
    finally:
        _ACTIVE = previous


def active_dialect() -> Dialect:
    return _ACTIVE


def _read_options(**kwargs):
    import pyarrow.csv as pacsv  # deferred: imports pyarrow

    return pacsv.ReadOptions(encoding=_ACTIVE.encoding, **kwargs)


def _parse_options(**kwargs):
    import pyarrow.csv as pacsv  # deferred: imports pyarrow

    return pacsv.ParseOptions(delimiter=_ACTIVE.delimiter, **kwargs)


def _inferring_options():
    import pyarrow.csv as pacsv  # deferred: imports pyarrow

    return pacsv.ConvertOptions(decimal_point=_ACTIVE.decimal)


def read_table(path: Path, role: str):
    """The whole file, by pyarrow's multi-threaded reader (types inferred), when its text fits in memory:
    a gzip file is decompressed as it is read, and refused once its text passes what fits (_Capped)."""
    import pyarrow.csv as pacsv  # deferred: imports pyarrow

    if _gzipped(path):
        return read_whole(path, role, "CSV", lambda: _read_gzipped(path, role), lambda exc: _explain(path, exc))
    limits.fits(declared(path, role, 0), f"{role}: {path}")
    table = _read_in_pieces(path)
    if table is not None:
        return table
    return read_whole(path, role, "CSV", lambda: pacsv.read_csv(path, read_options=_read_options(),
                                                                 parse_options=_parse_options(),
                                                                 convert_options=_inferring_options()),
                      lambda exc: _explain(path, exc))


def _read_in_pieces(path: Path):
    """The whole file as read_table reads it, parsed a few blocks at a time (_parallel_csv), or None
    where that could differ from one read of the whole file: then read_table reads it whole.

    Arrow's reader of a whole file holds the file's parsed text and its converted columns at once:
    about 2.4 times the file at its peak. A piece at a time, the text held is a few blocks. Each
    piece infers its own types: where they disagree, the column is what the whole file's inference
    makes it only for integers, floats and empty pieces (float64 if any piece is, else int64);
    any other disagreement, any problem (a bad row, an encoding: named by the whole-file read) or
    no data row at all, and this returns None."""
    import pyarrow as pa  # deferred: imports pyarrow

    try:
        pieces = list(_parallel_csv(path, None, (), convert=_inferring_options()))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError, UnicodeDecodeError,
            DataError):
        return None
    if not pieces or any(piece.column_names != pieces[0].column_names for piece in pieces):
        return None
    for index in range(pieces[0].num_columns):
        kinds = {piece.schema.types[index] for piece in pieces}
        if len(kinds) == 1:
            continue
        numbers = kinds - {pa.null()}
        if not numbers or not numbers <= {pa.int64(), pa.float64()}:
            return None
        target = pa.float64() if pa.float64() in numbers else pa.int64()
        pieces = [piece if piece.schema.types[index] == target else
                  piece.set_column(index, piece.schema.names[index], piece.column(index).cast(target))
                  for piece in pieces]
    return pa.concat_tables(pieces)


def declared(path: Path, role: str, up_to: int) -> limits.Declared:
    """The file's text size and the memory reading it whole takes; a gzip file's text is counted by
    decompressing it (1 MiB at a time), stopping once it passes `up_to` bytes, or where the stream
    is damaged (its reader then says so in its own words)."""
    if not _gzipped(path):
        size = path.stat().st_size
        return limits.Declared(size, TEXT_MEMORY_FACTOR * size)
    import pyarrow as pa  # deferred: imports pyarrow

    count = 0
    with contextlib.suppress(pa.ArrowInvalid, OSError), _gunzip(path) as handle:
        while count <= up_to:
            block = handle.read(1 << 20)
            if not block:
                break
            count += len(block)
    return limits.Declared(count, TEXT_MEMORY_FACTOR * count, exact=count <= up_to)


def _read_gzipped(path: Path, role: str):
    import pyarrow.csv as pacsv  # deferred: imports pyarrow

    with _Capped(path, role) as text:
        return pacsv.read_csv(text, read_options=_read_options(), parse_options=_parse_options(),
                              convert_options=_inferring_options())


class _Capped(io.RawIOBase):
    """A gzip file's text for pyarrow, decompressed as it is read: past what fits in memory read
    whole, exit 3 (a decompression bomb, or text too large to read whole)."""

    def __init__(self, path: Path, role: str):
        super().__init__()
        self.path, self.role = path, role
        self.limit, self.source = limits.memory_limit()
        self.cap = None if self.limit is None else self.limit // TEXT_MEMORY_FACTOR
        self.handle = _gunzip(path)
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.handle.read(len(buffer))
        buffer[:len(data)] = data
        self.count += len(data)
        if self.cap is not None and self.count > self.cap:
            raise DataError(f"{self.role}: {self.path}: decompresses to more than {limits.size_text(self.cap)} of "
                            f"text (read that far); reading it whole needs about {TEXT_MEMORY_FACTOR} times its text, "
                            f"more than {limits.memory_text(self.limit, self.source)}", hint=limits.READ_WHOLE_HINT)
        return len(data)

    def close(self) -> None:
        self.handle.close()
        super().close()


def header(path: Path, role: str, name: str) -> list[str]:
    """The column names, reading nothing after the header; `name`: the file as messages name it."""
    with header_errors(path, role, "CSV"), _open(path) as handle:
        return read_header(handle, name, role)


def read_header(stream, name: str, role: str) -> list[str]:
    """The header record (quoted newlines allowed), read line by line so a stream can go on after it."""
    raw = b""
    while True:
        line = stream.readline(HEADER_BYTES + 1 - len(raw))
        raw += line
        if len(raw) > HEADER_BYTES:
            raise DataError(f"{role}: {name}: its first row is longer than {limits.size_text(HEADER_BYTES)} — "
                            "expected a header row naming the columns, then data rows")
        if not line or raw.count(b'"') % 2 == 0:
            break
    encoding = "utf-8-sig" if _ACTIVE.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else _ACTIVE.encoding
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(f"{role}: {name}: cannot be read as CSV: {exc} — save the file as UTF-8",
                        hint="or name its encoding in the config: data.csv: {encoding: latin-1} (or cp1252, ...)") \
            from None
    names = next(csv.reader(io.StringIO(text), delimiter=_ACTIVE.delimiter), [])
    if not names:
        raise DataError(f"{role}: {name}: is empty — expected a header row naming the columns, then data rows")
    return names


def units(path: Path) -> list[tuple[int | None, int]]:
    """What data.stream reads (and shuffles) one at a time: a CSV file is one piece."""
    return [(None, 0)]


def chunks(path: Path, needed: list[str], row_group: int | None):
    """data.stream: the `needed` columns as text, block by block (one core, little memory)."""
    yield from _csv_reader(path, None, needed, ())


def batches(path: Path | None, header: list[str] | None, needed: list[str], numeric: list[str] = (),
            batch_rows: int = 0):
    """evaluate/predict: tables of the `needed` columns, in file order; `path` None reads stdin after
    `header`. (Batches are a few blocks long: `batch_rows` is for formats that count rows.)

    A file is read in chunks of a few blocks cut at row ends, each parsed by Arrow on every core,
    with the `numeric` columns (the features) parsed straight into float64 and the others as text.
    Any problem Arrow reports (a value that is not a number, a ragged row) stops that fast read: the
    rest of the file, from the first row not yet handed out, is read again as text by Arrow's
    streaming reader, where the per-value checks name the bad value, its column and its row. stdin
    cannot be read twice, so it is always read that way.
    """
    import pyarrow as pa  # deferred: imports pyarrow

    if path is None or not numeric:
        yield from _csv_reader(path, header, needed, ())
        return
    done = 0
    try:
        for table in _parallel_csv(path, needed, numeric):
            done += table.num_rows
            yield table if _ACTIVE.decimal == "." else _decimal_commas(table)
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


def _gzipped(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def _gunzip(path: Path):
    """A gzip file's text as a stream, by Arrow's decompressor (its messages, as when Arrow reads it)."""
    import pyarrow as pa  # deferred: imports pyarrow

    return pa.input_stream(path, compression="gzip")


def _open(path: Path):
    return gzip.open(path, "rb") if _gzipped(path) else open(path, "rb")


def _convert_options(needed: list[str], numeric):
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.csv as pacsv  # deferred: imports pyarrow

    types = {c: pa.string() for c in needed}
    types.update({c: pa.float64() for c in numeric if c in types})
    return pacsv.ConvertOptions(include_columns=needed, column_types=types, strings_can_be_null=True,
                                decimal_point=_ACTIVE.decimal)


def _parallel_csv(path: Path, needed: list[str] | None, numeric, convert=None):
    """Arrow's multi-threaded reader over chunks of ~CHUNK_BLOCKS blocks: the streaming reader parses
    on one core only. Chunks end at a row end outside quotes, so each parses on its own, as Arrow's own
    reader splits a file into blocks. `convert`: Arrow's conversion options, instead of `needed`
    as text and `numeric` as float64."""
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.csv as pacsv  # deferred: imports pyarrow

    with _open(path) as handle:
        names = read_header(handle, str(path), "input")
        options = _read_options(column_names=names, block_size=CSV_BLOCK_BYTES, use_threads=True)
        parse = _parse_options()
        convert = convert or _convert_options(needed, numeric)
        chunks = _read_chunks(handle) if _gzipped(path) else _mapped_chunks(handle)
        for chunk in chunks:
            yield pacsv.read_csv(pa.BufferReader(chunk), read_options=options, parse_options=parse,
                                 convert_options=convert)


CHUNK_BLOCKS = 8  # blocks per chunk handed to Arrow's reader: 16 MB of text (fewer chunks, fewer pauses)
_NOT_SPACE = re.compile(rb"\S")


def _mapped_chunks(handle):
    """The rest of a plain file, after its header, as zero-copy slices of the file mapped into memory:
    no copy of its text is made (read into bytes, then joined and cut, the text was copied twice).
    The pages of each chunk are let go once the next is asked for, so the file's text is never all
    counted in the process's memory."""
    import pyarrow as pa  # deferred: imports pyarrow

    start, size = handle.tell(), os.fstat(handle.fileno()).st_size
    if start >= size:
        return
    mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    whole = pa.py_buffer(mapped)
    window, dropped = CHUNK_BLOCKS * CSV_BLOCK_BYTES, 0
    while start < size:
        cut = size - 1 if start + window >= size else _row_end(mapped, start, start + window)
        if cut < 0:
            raise pa.ArrowInvalid(f"a row longer than {limits.size_text(window)}")
        if _NOT_SPACE.search(mapped, start, cut + 1):
            yield whole.slice(start, cut + 1 - start)
        done = (cut + 1) // mmap.PAGESIZE * mmap.PAGESIZE  # madvise takes whole pages
        if done > dropped and hasattr(mapped, "madvise"):  # (not on Windows)
            mapped.madvise(mmap.MADV_DONTNEED, dropped, done - dropped)
            dropped = done
        start = cut + 1


def _read_chunks(handle):
    """The rest of a stream (a gzip file's text), after its header, read and cut into chunks of whole
    rows."""
    import pyarrow as pa  # deferred: imports pyarrow

    window = CHUNK_BLOCKS * CSV_BLOCK_BYTES
    rest = b""
    while True:
        data = handle.read(window)
        if not data:
            break
        data = rest + data
        cut = _row_end(data, 0, len(data))
        if cut < 0:  # no whole row yet: read on, up to a row Arrow's streaming reader could take
            if len(data) > window:
                raise pa.ArrowInvalid(f"a row longer than {limits.size_text(window)}")
            rest = data
            continue
        chunk, rest = data[:cut + 1], data[cut + 1:]
        if not chunk.isspace():
            yield pa.py_buffer(chunk)
    if rest and not rest.isspace():
        yield pa.py_buffer(rest)


def _row_end(data, start: int, stop: int) -> int:
    """The index of the last newline of data[start:stop] (bytes or a memory map) that is outside quotes
    (an even number of quote characters before it in that range, "" escapes included), or -1."""
    cut = data.rfind(b"\n", start, stop)
    if cut < 0 or data.find(b'"', start, cut) < 0:
        return cut
    quotes = _quotes(data, start, cut)
    while quotes % 2:
        previous = cut
        cut = data.rfind(b"\n", start, previous)
        if cut < 0:
            return -1
        quotes -= _quotes(data, cut, previous)
    return cut


def _quotes(data, start: int, stop: int) -> int:
    """Quote characters in data[start:stop]: counted in place in bytes; a memory map has no count, so
    that range is copied (only for a file with quotes)."""
    return data.count(b'"', start, stop) if isinstance(data, bytes) else data[start:stop].count(b'"')


def _csv_reader(path: Path | None, header: list[str] | None, needed: list[str], numeric):
    """Arrow's streaming reader (one core, block by block); `path` None: stdin, its header already read."""
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.csv as pacsv  # deferred: imports pyarrow

    convert = _convert_options(needed, numeric)
    try:
        if path is None:
            options = _read_options(column_names=header, block_size=CSV_BLOCK_BYTES)
            reader = pacsv.open_csv(sys.stdin.buffer, read_options=options, parse_options=_parse_options(),
                                    convert_options=convert)
        else:
            reader = pacsv.open_csv(path, read_options=_read_options(block_size=CSV_BLOCK_BYTES),
                                    parse_options=_parse_options(), convert_options=convert)
    except pa.ArrowInvalid as exc:
        if "Empty CSV" in str(exc):
            return  # a header and no rows: nothing to read
        raise
    if _ACTIVE.decimal == ".":
        yield from reader
        return
    for batch in reader:  # text columns: a number written 3,5 is read as 3.5 by the value checks
        yield _decimal_commas(batch)


def _decimal_commas(batch):
    """data.csv.decimal ',': every text value that is a number written with a decimal comma, with a point."""
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.compute as pc  # deferred: imports pyarrow

    columns = []
    for column in batch.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            column = pc.replace_substring_regex(column, pattern=r"^(\s*[-+]?\d*),(\d+([eE][-+]?\d+)?\s*)$",
                                                replacement=r"\1.\2")
        columns.append(column)
    return type(batch).from_arrays(columns, schema=batch.schema)


# ---- why a file could not be read whole ------------------------------------------------------------


def delimiter_hint(header: str) -> str | None:
    """A one-column header that holds another delimiter: the data.csv setting that reads it."""
    current = _ACTIVE.delimiter
    if current in header:
        return None
    for delimiter, called, written in ((";", "semicolons", "';'"), ("\t", "tabs", "'\\t'"), ("|", "'|'", "'|'"),
                                       (",", "commas", "','")):
        if delimiter in header:
            return (f"one column: the file seems separated by {called}, and data.csv.delimiter is {current!r} — "
                    f"did you mean data.csv.delimiter: {written}? (evaluate and predict follow the run's data.csv)")
    return None


def _header_hint(path: Path) -> str | None:
    """delimiter_hint for the file's first line, however it is encoded."""
    try:
        with _open(path) as handle:
            first = handle.readline(HEADER_BYTES).decode(_ACTIVE.encoding, errors="replace")
    except (OSError, LookupError, EOFError):
        return None
    return delimiter_hint(first.rstrip("\r\n"))


def _explain(path: Path, exc: BaseException) -> str | None:
    not_text = _not_text(path)
    if not_text:
        return not_text
    hint = _header_hint(path)
    if hint:
        return f"cannot be read as CSV: {hint}"
    ragged = _ragged_row(path, exc)
    return f"cannot be read as CSV: {ragged}" if ragged else None


def _not_text(path: Path) -> str | None:
    """Why a CSV that pyarrow could not read is not UTF-8 text at all (NUL bytes), or None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "is UTF-16 text (as Excel's \"Unicode text\" saves it) — save the file as CSV UTF-8"
    if head.startswith(b"\x1f\x8b") or b"\x00" not in head:  # gzip: pyarrow decompresses it
        return None
    return ("is a binary file, not CSV text — expected comma-separated UTF-8 text "
            "(or name the file .parquet / .npz if that is what it is)")


def _ragged_row(path: Path, exc: BaseException) -> str | None:
    """pyarrow's "Expected 3 columns, got 4" names no row; read again, single-threaded, to find it."""
    import pyarrow.csv as pacsv  # deferred: imports pyarrow

    if "Expected" not in str(exc) or "columns, got" not in str(exc):
        return None
    found: list = []

    def handler(row) -> str:
        found.append(row)
        return "error"

    quiet, sys.unraisablehook = sys.unraisablehook, lambda _: None  # a row pyarrow cannot decode to show it
    try:
        with contextlib.suppress(Exception):  # the first error is already known; this only adds its row
            pacsv.read_csv(path, read_options=_read_options(use_threads=False),
                           parse_options=_parse_options(invalid_row_handler=handler))
    finally:
        sys.unraisablehook = quiet
    if not found or found[0].number is None:
        return None
    row = found[0]
    return (f"row {row.number - 1}: {row.actual_columns} field(s) where the header has {row.expected_columns} "
            f"({row.text[:80]!r}) — every row needs one value per column")
