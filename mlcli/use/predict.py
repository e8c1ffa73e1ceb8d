"""`mlcli predict`: predictions for a file, streamed batch by batch (docs/contract.md §5).

Input is read by the InputReader that evaluate uses (columns by name, values checked as training
checks them); each batch is predicted and appended to the output before the next is read, so
memory stays flat however long the file is. An output file is written under a temporary name and
renamed when complete: a failure at row 1,500,000 never leaves a file that looks finished.

--keep columns of a CSV input are copied as the text they hold ("007" stays "007"): a streaming
reader cannot know a column's type before it has seen the whole file. Parquet and .npz inputs keep
their types.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mlcli import console
from mlcli.checkpoint.checkpoint import Checkpoint, checkpoint_dialect, open_checkpoint
from mlcli.checkpoint.load import load_model
from mlcli.data.background import in_background, prefetch
from mlcli.data.formats.csv import use_dialect
from mlcli.data.image_inputs import ImageInputReader
from mlcli.data.inputs import InputReader
from mlcli.errors import DataError, UsageError
from mlcli.run.files import check_writable_folder, writing
from mlcli.use.inference import Inference, default_batch_size
from mlcli.use.threshold import resolve_threshold

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
PARQUET_ROW_GROUP = 1 << 16
IMAGE_PATH = "path"  # an image model's predictions: the image's path first (docs/contract.md §7)


@dataclass
class PredictResult:
    checkpoint: str  # the model file used
    input: str  # INPUT as the user wrote it
    rows: int
    output: str  # a path, or "stdout"
    columns: list[str]
    ignored: list[str] = field(default_factory=list)

    def document(self) -> dict:
        """The --json summary (with --output FILE: the predictions themselves are in the file)."""
        return {"checkpoint": self.checkpoint, "input": self.input, "output": self.output, "rows": self.rows,
                "columns": self.columns, "ignored_columns": self.ignored}


def to_stdout(output: Path | None) -> bool:
    """Whether the predictions go to stdout (no --output, or --output -)."""
    return output is None or str(output) == "-"


def output_format(output: Path | None) -> str:
    if to_stdout(output):
        return "csv"
    fmt = FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise UsageError(f"--output {output}: unknown file type {output.suffix or '(none)'!r} — expected "
                         ".csv, .parquet or .jsonl (or no --output for CSV on stdout)")
    if output.is_dir():
        raise UsageError(f"--output {output}: is a directory — expected a file name")
    check_writable_folder(output.parent, f"--output {output}")  # before TensorFlow starts
    return fmt


def prediction_columns(ckpt: Checkpoint, probabilities: bool) -> list[str]:
    if ckpt.task == "classification":
        return ["prediction"] + ([f"prob_{c}" for c in ckpt.classes] if probabilities else [])
    if len(ckpt.labels) == 1:
        return ["prediction"]
    return [f"prediction_{name}" for name in ckpt.labels]


def predict(checkpoint: Path, *args, **kwargs):
    """The run's CSV dialect (its config.yaml's data.csv; the default for a .keras file outside a run) for
    every CSV it reads, then _predict."""
    with use_dialect(checkpoint_dialect(checkpoint)):
        return _predict(checkpoint, *args, **kwargs)


def _predict(checkpoint: Path, input_spec: str, output: Path | None, batch_size: int | None, keep: list[str],
            probabilities: bool, *, unsafe: bool = False, threshold: float | str | None = None) -> PredictResult:
    """`unsafe` (--unsafe) lets Keras run Python code stored in the model file; `threshold` (--threshold, a
    number or `best`) decides a binary classifier's class (mlcli.use.threshold)."""
    fmt = output_format(output)
    ckpt = open_checkpoint(checkpoint)
    if ckpt.classes is not None or ckpt.task != "classification":  # known before TensorFlow starts
        resolve_threshold(threshold, ckpt)
    keep = list(dict.fromkeys(keep))
    for note in ckpt.notes:
        console.info(note)
    reader = None
    if ckpt.takes_images:  # every file is listed and its header checked before TensorFlow starts
        reader = _open_images(ckpt, input_spec, keep, batch_size)
        keep = [IMAGE_PATH]
    elif ckpt.input_known:  # headers and --keep are checked before TensorFlow starts
        reader = _open_input(ckpt, input_spec, keep, probabilities)
    model, ckpt = load_model(ckpt, unsafe=unsafe)
    predictor = Predictor.of(model, ckpt, batch_size, fmt, keep, probabilities, threshold)
    reader = reader or _open_input(predictor.ckpt, input_spec, keep, probabilities)
    rows = 0
    kept_types = KeptTypes() if fmt != "csv" else None
    # Three stages at once: a thread reads and checks the next batch, this one predicts, another
    # formats and writes the previous one (Arrow and TensorFlow release the GIL).
    with _open_writer(fmt, output) as writer, in_background(writer.write) as write:
        for batch in prefetch(reader.batches()):
            if kept_types is not None and batch.kept_as_text:
                batch.kept = kept_types.apply(batch.kept, keep, rows)
            write(predictor.table(batch))
            rows += batch.rows
        if rows == 0:
            write(_empty_table(keep, predictor.names, predictor.labels, probabilities))
    return PredictResult(str(predictor.ckpt.model_path), input_spec, rows,
                         "stdout" if to_stdout(output) else str(output), keep + predictor.names, reader.extra)


@dataclass
class Predictor:
    """A loaded model and its checkpoint turning rows into section 5's columns: the one path from rows
    to predictions of `mlcli predict` (a file, batch by batch) and `mlcli serve` (mlcli.serve: rows of
    requests, several requests' rows in one forward pass). Rows are read and checked by InputReader,
    computed by Inference, and formatted by `table`."""

    ckpt: Checkpoint
    inference: Inference
    names: list[str]  # the prediction columns (after any --keep columns)
    labels: object  # the classes as a pyarrow array (classification), else None
    keep: list[str]
    probabilities: bool

    @classmethod
    def of(cls, model, ckpt: Checkpoint, batch_size: int | None, fmt: str, keep: list[str] = (),
           probabilities: bool = True, threshold: float | str | None = None) -> Predictor:
        """`fmt`: the output format (csv writes float class labels as Python does, mlcli.use.predict._class_array);
        `threshold`: --threshold (a number or `best`) for a binary classifier (mlcli.use.threshold)."""
        units = int(np.prod(model.output_shape[1:]))
        if ckpt.standalone and ckpt.task == "regression" and units > len(ckpt.labels):
            ckpt = replace(ckpt, labels=[str(i) for i in range(units)])  # one prediction column per output
        keep = list(keep)
        names = _output_names(ckpt, keep, probabilities)  # a standalone model's classes are known now
        labels = _class_array(ckpt.classes, fmt) if ckpt.task == "classification" else None
        inference = Inference(model, ckpt, batch_size or default_batch_size(ckpt), resolve_threshold(threshold, ckpt))
        return cls(ckpt, inference, names, labels, keep, probabilities)

    def reader(self, spec: str, role: str, table=None) -> InputReader:
        """Rows to predict: INPUT (a file, glob, builtin or -), or `table` (rows in memory, named `spec`)."""
        ckpt = self.ckpt
        return InputReader(spec, role, features=ckpt.features, input_shape=ckpt.input_shape, labels=None,
                           keep=self.keep, task=ckpt.task, classes=ckpt.classes, typed=ckpt.typed, table=table)

    def table(self, batch, outputs: np.ndarray | None = None):
        """A batch's prediction columns (its --keep columns first); `outputs`: the model's outputs for
        its rows when they were computed already (mlcli serve computes several batches' in one call)."""
        import pyarrow as pa  # deferred: imports pyarrow

        if outputs is None:
            outputs = self.inference.outputs(batch.x)
        indices, values = self.inference.decode(outputs)
        columns = list(batch.kept)
        by_column = np.ascontiguousarray(values.T, dtype=np.float32)  # one transpose, not a strided copy per column
        if indices is not None:
            columns.append(self.labels.take(pa.array(indices)))
            if self.probabilities:
                columns += [pa.array(column) for column in by_column]
        else:
            columns += [pa.array(column) for column in by_column]
        return pa.Table.from_arrays(columns, names=self.keep + self.names)


def _open_images(ckpt: Checkpoint, spec: str, keep: list[str], batch_size: int | None) -> ImageInputReader:
    """An image model's INPUT: an image file, a folder of images or a table of paths (docs/contract.md §7);
    the output's first column is each image's path."""
    if keep:
        raise UsageError(f"--keep {keep[0]}: an image model's predictions have the image's path as their first "
                         "column, and no other input column to keep", hint="drop --keep")
    reader = ImageInputReader.open(spec, ckpt.inputs, batch_size or default_batch_size(ckpt))
    for note in reader.notes():
        console.info(note)
    return reader


def _open_input(ckpt: Checkpoint, spec: str, keep: list[str], probabilities: bool) -> InputReader:
    if not (ckpt.standalone and ckpt.classes is None):
        _output_names(ckpt, keep, probabilities)
    reader = InputReader(spec, "input", features=ckpt.features, input_shape=ckpt.input_shape, labels=None,
                         keep=keep, task=ckpt.task, classes=ckpt.classes, typed=ckpt.typed)
    if reader.extra:
        console.info(f"ignoring {len(reader.extra)} input column(s) the model does not use: "
                     f"{', '.join(reader.extra[:12])}{', …' if len(reader.extra) > 12 else ''}")
    return reader


def _output_names(ckpt: Checkpoint, keep: list[str], probabilities: bool) -> list[str]:
    names = prediction_columns(ckpt, probabilities)
    clash = [c for c in keep if c in names]
    if clash:
        raise UsageError(f"--keep {clash[0]}: the output already has a column {clash[0]!r} (a prediction column)",
                         hint="rename that input column, or do not keep it")
    return names


class KeptTypes:
    """--keep columns of a CSV input are read as text, so CSV output copies them exactly as written
    (an id "007" stays "007"). JSON Lines and Parquet have types: a kept column whose first batch holds
    only integers is written as int64, only numbers as float64 (what pandas would read), anything else
    as text; every later batch must fit the type chosen (Parquet has one schema for the whole file)."""

    def __init__(self) -> None:
        self.types: list | None = None

    def apply(self, columns: list, names: list[str], first_row: int) -> list:
        import pyarrow as pa  # deferred: imports pyarrow
        import pyarrow.compute as pc  # deferred: imports pyarrow

        if self.types is None:
            self.types = [_number_type(column) for column in columns]
        typed = []
        for column, name, kind in zip(columns, names, self.types):
            if kind is None:
                typed.append(column)
                continue
            try:
                typed.append(pc.cast(column, kind))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                bad = next(i for i, v in enumerate(column.to_pylist()) if v is not None and not _casts([v], kind))
                raise DataError(
                    f"input: --keep column {name!r}, row {first_row + bad + 1}: {column[bad].as_py()!r} is not "
                    f"{'an integer' if pa.types.is_integer(kind) else 'a number'} like the rows before it, which "
                    f"are written as {kind}",
                    hint="write CSV output (--output *.csv), which copies --keep columns as text",
                ) from None
        return typed


def _number_type(column):
    """int64 or float64 when every value of the column is one (and there is at least one), else None."""
    import pyarrow as pa  # deferred: imports pyarrow

    if column.null_count == len(column):
        return None
    return next((kind for kind in (pa.int64(), pa.float64()) if _casts(column, kind)), None)


def _casts(values, kind) -> bool:
    """Whether Arrow converts every one of `values` (an Arrow column, or a list of text) to `kind`."""
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.compute as pc  # deferred: imports pyarrow

    try:
        pc.cast(values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values), kind)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def _class_array(classes: list, fmt: str):
    """The labels predictions are written in. Float labels go to CSV as Python writes them (1.0, as in
    labels.json and the prob_1.0 header; Arrow's CSV writer would print 1)."""
    import pyarrow as pa  # deferred: imports pyarrow

    if fmt == "csv" and any(isinstance(c, float) for c in classes):
        return pa.array([repr(c) for c in classes])
    return pa.array(classes)


def _empty_table(keep: list[str], names: list[str], labels, probabilities: bool):
    import pyarrow as pa  # deferred: imports pyarrow

    types = [pa.string()] * len(keep)
    if labels is not None:
        types += [labels.type] + [pa.float32()] * (len(names) - 1)
    else:
        types += [pa.float32()] * len(names)
    return pa.Table.from_arrays([pa.array([], type=t) for t in types], names=keep + names)


# ---- writers: CSV, Parquet, JSON Lines; appended batch by batch ----------------------------------

@contextlib.contextmanager
def _open_writer(fmt: str, output: Path | None):
    if to_stdout(output):
        writer = _Writer(fmt, console.data_bytes, None, "stdout")
        yield writer
        writer.close()
        return
    subject = f"--output {output}"
    with writing(subject):
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    handle = os.fdopen(fd, "wb")
    try:
        writer = _Writer(fmt, handle.write, handle, subject)
        yield writer
        writer.close()
        with writing(subject):
            handle.close()
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, output)
    except BaseException:
        with contextlib.suppress(OSError):  # a failed flush here must not hide what stopped the writing
            handle.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Writer:
    """Appends tables to `write` in the output format; an OSError names `subject` (--output FILE, or stdout)."""

    def __init__(self, fmt: str, write, handle, subject: str):
        self.fmt, self.emit, self.handle, self.subject = fmt, write, handle, subject
        self.started = False
        self.parquet = None
        self.pending: list = []
        self.pending_rows = 0

    def write(self, table) -> None:
        with writing(self.subject):
            self._write(table)

    def _write(self, table) -> None:
        if self.fmt == "csv":
            self._csv(table)
        elif self.fmt == "jsonl":
            self.emit(_jsonl(table))
        else:
            self.pending.append(table)
            self.pending_rows += table.num_rows
            if self.pending_rows >= PARQUET_ROW_GROUP:
                self._flush_parquet()
        self.started = True

    def _csv(self, table) -> None:
        """CSV as people and `cut` expect it: quotes only where a value needs them (Arrow's writer
        would quote every text value and every header name)."""
        import pyarrow as pa  # deferred: imports pyarrow
        import pyarrow.compute as pc  # deferred: imports pyarrow
        import pyarrow.csv as pacsv  # deferred: imports pyarrow

        if not self.started:
            header = io.StringIO()
            csv.writer(header, lineterminator="\n").writerow(table.column_names)
            self.emit(header.getvalue().encode("utf-8"))
        needs_quotes = any(
            pc.any(pc.match_substring_regex(column, r'[,"\r\n]')).as_py()
            for column in table.columns if pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        )
        buffer = pa.BufferOutputStream()
        options = pacsv.WriteOptions(include_header=False, quoting_style="needed" if needs_quotes else "none")
        pacsv.write_csv(table, buffer, write_options=options)
        self.emit(buffer.getvalue().to_pybytes())

    def _flush_parquet(self) -> None:
        import pyarrow as pa  # deferred: imports pyarrow
        import pyarrow.parquet as pq  # deferred: imports pyarrow

        if not self.pending:
            return
        table = pa.concat_tables(self.pending)
        if self.parquet is None:
            self.parquet = pq.ParquetWriter(self.handle, table.schema)
        self.parquet.write_table(table, row_group_size=PARQUET_ROW_GROUP)
        self.pending, self.pending_rows = [], 0

    def close(self) -> None:
        with writing(self.subject):
            if self.fmt == "parquet":
                self._flush_parquet()
                if self.parquet is not None:
                    self.parquet.close()
            if self.handle is not None:
                self.handle.flush()  # the last buffered bytes: a full disk shows here, not at close


def _jsonl(table) -> bytes:
    """One JSON object per row (json_rows)."""
    lines = [json.dumps(row, ensure_ascii=False) for row in json_rows(table)]
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def json_rows(table) -> list[dict]:
    """A table's rows as JSON objects (JSON Lines output, mlcli serve's predictions): float32 values
    with their shortest exact text (0.1, not 0.10000000149011612); NaN and inf, which JSON cannot
    hold, as null."""
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.compute as pc  # deferred: imports pyarrow

    columns = [column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column for column in table.columns]
    singles = [i for i, column in enumerate(columns) if pa.types.is_float32(column.type)]
    if singles:  # all float32 columns through the text cast together: two Arrow calls, not two per column
        rows = table.num_rows
        both = pc.cast(pc.cast(pa.concat_arrays([columns[i] for i in singles]), pa.string()), pa.float64())
        for k, i in enumerate(singles):
            columns[i] = both.slice(k * rows, rows)
    for i, column in enumerate(columns):
        values = column.to_pylist()
        if pa.types.is_floating(column.type):
            values = [v if v is None or math.isfinite(v) else None for v in values]
        columns[i] = values
    names = table.column_names
    return [dict(zip(names, row)) for row in zip(*columns)]
