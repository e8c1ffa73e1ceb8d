"""data.stream's first pass: every file of the config read once, in chunks, before training.

It checks every value (with the in-memory reader's messages), counts rows, collects the label
vocabulary and computes the normalization statistics of the training rows — for typed features, their
vocabularies and statistics (mlcli.data.stream_features); the result is a Prepared whose splits are
mlcli.data.stream.StreamSplit (read again from disk each time they are used).

Typed features: the types are the declared ones, or inferred (mlcli.data.feature_types) from the
first chunk of data.train (a CSV block of about 2 MiB, its values typed as Arrow types a whole CSV
file: integers, true/false, dates, then floats; or a Parquet batch): declare a type when the first
rows do not show it (a column empty there, a few words among many numbers further down).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mlcli.config.schema import Config
from mlcli.data.feature_types import FeaturePlan, plan_features
from mlcli.data.labels import (
    adopt_vocabulary,
    in_classes,
    infer_task,
    is_classification_loss,
    label_array,
    regression_targets,
    single_class_error,
)
from mlcli.data.prepare import Prepared
from mlcli.data.sources import sha256
from mlcli.data.stream import SHUFFLE_BUFFER_ROWS, Moments, StreamSplit, _Plan, held_out
from mlcli.data.stream_features import FeatureTally, fitted_features
from mlcli.data.stream_source import ChunkSource
from mlcli.data.typed_values import take_rows
from mlcli.data.values import column_kind, weakest
from mlcli.errors import DataError


def prepare_stream(config: Config, vocabulary: list | None = None, plans: list[FeaturePlan] | None = None,
                   typed: bool = True) -> Prepared:
    """The first pass over data.train (and the validation/test files): checks, counts, labels, statistics.
    `plans` fixes the feature types (a typed parent's), `typed=False` keeps float features (a plain
    parent's), as mlcli.data.prepare.read_train."""
    data = config.data
    labels = data.label_columns()
    if plans is not None:
        train = ChunkSource(data.train, "data.train", labels=labels, features=[p.name for p in plans])
    else:
        train = ChunkSource(data.train, "data.train", labels=labels, features=data.feature_columns(),
                            exclude=data.exclude)
    task = data.task if data.task != "auto" else None
    if task == "classification" and len(labels) > 1:
        raise DataError("data.label: several label columns are for regression — give one label column")
    fraction = data.validation if isinstance(data.validation, float) else None
    scan = _scan_train(config, train, task, fraction, plans, typed)
    task, classes, plans = scan["task"], scan["classes"], scan["plans"]
    notes: list[str] = []
    if scan["dropped"]:
        notes.append("data.train: left out " + ", ".join(f"{count:,} row(s) with a missing {name}"
                                                         for name, count in scan["dropped"].items()))
    if classes is not None:
        classes = adopt_vocabulary(classes, vocabulary, notes)
    plan = _Plan(task, classes, scan["kind"], data.classes if task == "classification" else None,
                 seed=config.seed, fraction=fraction or 0.0, file_starts=scan["file_starts"], features=plans)
    moments = scan["moments"] if data.normalize != "none" and plans is None else None
    fitted = fitted_features(scan["tallies"], data.normalize) if plans is not None else None
    if fraction is not None:
        train_split = StreamSplit("train", train, _replace(plan, select="train"), scan["train_rows"], moments)
        validation = StreamSplit("validation", train, _replace(plan, select="validation"), scan["held_rows"])
        if validation.rows == 0:
            raise DataError(f"data.validation: {fraction} of {scan['rows']} training rows is an empty split — "
                            "use a larger fraction, a validation file, or null")
        if train_split.rows == 0:
            raise DataError(f"data.validation: {fraction} leaves no training rows")
    else:
        train_split = StreamSplit("train", train, plan, scan["rows"], moments)
        validation = None
    train_split.notes.append(
        f"data.train streamed from disk in chunks: {train_split.rows:,} training rows"
        + (f", {validation.rows:,} validation rows held out by a hash of each row's number" if fraction else "")
        + (f"; rows shuffled within windows of {SHUFFLE_BUFFER_ROWS:,}" if data.shuffle else ""))
    files = {"train": [_facts(train, scan["rows"], scan["file_rows"])]}
    test = None
    for role, spec in (("validation", data.validation if isinstance(data.validation, str) else None),
                       ("test", data.test)):
        if spec is None:
            continue
        source = ChunkSource(spec, f"data.{role}", labels=labels, features=train.feature_names)
        split_plan = _replace(plan, file_starts={})
        rows = _count(StreamSplit(role, source, split_plan, 0))
        if role == "validation":
            validation = StreamSplit(role, source, split_plan, rows)
        else:
            test = StreamSplit(role, source, split_plan, rows)
        files[role] = [_facts(source, rows, {})]
    return Prepared(task=task, classes=classes, feature_names=train.feature_names, label_names=labels,
                    input_shape=(len(train.feature_names),), train=train_split, validation=validation,
                    test=test, files=files, notes=notes, features=fitted)


def _scan_train(config: Config, train: ChunkSource, task: str | None, fraction: float | None,
                plans: list[FeaturePlan] | None, typed: bool) -> dict:
    kinds: set[str] = set()
    tallies: list[FeatureTally] = []
    dropped: dict[str, int] = {}
    vocabulary: set = set()
    moments = Moments()
    rows = kept = held_rows = 0
    file_rows: dict = {}
    file_starts: dict = {}
    for unit, offset, table in train.chunks():
        if unit.path not in file_starts:
            file_starts[unit.path] = rows - offset
        if rows == 0:
            if plans is None and typed:
                plans = plan_features(as_file_types(table), train.feature_names, config.data,
                                      f"data.train: {train.spec}")
            tallies = [FeatureTally(plan) for plan in plans or []]
        if plans is None:
            x = train.features(table, unit, offset)
            keep = np.ones(len(x), dtype=bool)
        else:
            x, keep, counts = train.typed_features(table, unit, offset, plans)
            for name, count in counts.items():
                dropped[name] = dropped.get(name, 0) + count
        label_columns = [table.column(name) for name in train.label_names]
        raw = train.labels(table, unit, offset)
        if task is None:
            task = infer_task(config, raw[0], "data.train") if not is_classification_loss(config) \
                else "classification"
        chunk_rows = np.arange(rows, rows + len(keep), dtype=np.uint64)
        rows += len(keep)
        file_rows[unit.path] = file_rows.get(unit.path, 0) + len(keep)
        if task == "classification":
            kinds.add(column_kind(label_columns[0]))
            if config.data.classes is not None:
                keep &= in_classes(raw[0], config.data.classes)
            vocabulary.update(_plain(v) for v in _unique_text(label_columns[0], keep))
        else:
            regression_targets(label_array(raw), "data.train",
                               train.file_source(unit.path).spec, train.label_names, offset)
        kept += int(keep.sum())
        if fraction is not None:
            held = held_out(chunk_rows, config.seed, fraction) & keep
            held_rows += int(held.sum())
            keep &= ~held
        if plans is None:
            moments.add(x[keep])
        else:
            training = take_rows(x, np.flatnonzero(keep))
            for tally in tallies:
                tally.add(training[tally.plan.name])
    if rows == 0:
        raise DataError(f"data.train: {train.spec}: has a header but no data rows")
    classes = None
    kind = weakest(kinds) if task == "classification" else None
    if task == "classification":
        if kept == 0:
            raise DataError(f"data.train: {train.spec}: no row has a label in data.classes {config.data.classes}")
        classes = sorted({_as(kind, v) for v in vocabulary})
        if len(classes) < 2:
            raise single_class_error(train.spec, train.label_names[0], classes[0], config.data.classes)
    return {"task": task, "classes": classes, "kind": kind, "moments": moments, "rows": kept,
            "train_rows": kept - held_rows, "held_rows": held_rows, "file_rows": file_rows,
            "file_starts": file_starts, "plans": plans, "tallies": tallies, "dropped": dropped}


def as_file_types(table):
    """A chunk's CSV text typed as Arrow types a whole CSV file (integers, true/false, dates,
    timestamps, then floats; a column with no value stays empty): what type inference judges by."""
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.compute as pc  # deferred: imports pyarrow

    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) and column.null_count == len(column):
            column = pa.nulls(len(column))
        elif pa.types.is_string(column.type):
            for kind in (pa.int64(), pa.bool_(), pa.date32(), pa.timestamp("s"), pa.float64()):
                try:
                    column = pc.cast(column, kind)
                    break
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    continue
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _unique_text(column, keep: np.ndarray) -> list:
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.compute as pc  # deferred: imports pyarrow

    if not keep.all():
        column = column.filter(pa.array(keep))
    return pc.unique(column).to_pylist()


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _as(kind: str | None, value):
    """A vocabulary value as its column's kind (CSV text is collected as text)."""
    if not isinstance(value, str) or kind in (None, "str"):
        return value
    return int(value) if kind == "int" else float(value)


def _count(split: StreamSplit) -> int:
    """Rows of a validation/test file (after data.classes), every value and label checked."""
    rows = sum(len(x) for x, _ in split.chunks())
    if rows == 0:
        raise DataError(f"{split.source.role}: {split.source.spec}: has no data rows"
                        + (" with a label in data.classes" if split.plan.only_classes is not None else ""))
    return rows


def _facts(source: ChunkSource, rows: int, file_rows: dict) -> dict:
    files = [{"path": str(p), "sha256": sha256(p)} for p in source.source.paths]
    for entry, path in zip(files, source.source.paths):
        if path in file_rows or len(files) == 1:  # rows read from the file (before data.classes)
            entry["rows"] = file_rows.get(path, rows)
    return {"spec": source.spec, "rows": rows, "files": files, "streamed": True}


def _replace(plan: _Plan, **changes) -> _Plan:
    return replace(plan, **changes)
