"""data.stream: training on CSV or Parquet read from disk in chunks, for data larger than memory.

When: data.stream true, or auto (the default) when data.train holds more than STREAM_ABOVE_BYTES
(1 GiB once decompressed) or would not fit in memory (mlcli.data.load decides). false always loads
the data into memory.

One pass at the start (mlcli.data.stream_scan) reads each file once: it checks every value (the
in-memory reader's checks and messages), counts rows, collects the label vocabulary, and computes
the normalization statistics of the training rows (float64, merged chunk by chunk) — for typed
features, their vocabularies and statistics (mlcli.data.stream_features); their chunks are then
{column: values} as in memory (mlcli.data.typed_values), rows missing a `missing: drop` feature left out. Each epoch then
reads the files again. Nothing that is kept grows with the number of rows; memory is bounded by the
chunk size and the shuffle buffer.

- Validation (a fraction): a row is held out when a hash of (seed, its row number in data.train)
  falls below the fraction — deterministic without loading the data, and without an index in memory.
  Classes are held out in proportion on average, not exactly (the in-memory split is stratified).
- Shuffling (data.shuffle): each epoch, from (seed, epoch), the order of the files (and of Parquet
  row groups) is shuffled, then rows are shuffled within windows of SHUFFLE_BUFFER_ROWS rows. Files
  sorted by label should be shuffled once beforehand. Without shuffling, the batches are exactly the
  in-memory ones, so the two give the same model.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from mlcli.data.labels import class_indices, encode, in_classes, label_array, regression_targets
from mlcli.data.pipeline import steps_per_epoch
from mlcli.data.stream_source import ChunkSource
from mlcli.data.typed_values import concat_rows, row_count, take_rows
from mlcli.runtime import import_tensorflow

SHUFFLE_BUFFER_ROWS = 65_536  # 16 MiB of float32 at 64 features
_MASK64 = 0xFFFFFFFFFFFFFFFF


def held_out(rows: np.ndarray, seed: int, fraction: float) -> np.ndarray:
    """True for the rows (row numbers in data.train) that the validation split holds out: a
    splitmix64 hash of (seed, row) below `fraction` of the 64-bit range."""
    with np.errstate(over="ignore"):
        z = rows.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15 + 0x9E3779B97F4A7C15) & _MASK64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction


@dataclass
class Moments:
    """Per-feature count, mean, sum of squared deviations, min and max, merged chunk by chunk
    (Chan et al.'s parallel update, in float64)."""

    count: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None
    low: np.ndarray | None = None
    high: np.ndarray | None = None

    def add(self, x: np.ndarray) -> None:
        if not len(x):
            return
        x = x.astype(np.float64)
        n, mean = len(x), x.mean(axis=0)
        m2 = ((x - mean) ** 2).sum(axis=0)
        if self.count == 0:
            self.count, self.mean, self.m2, self.low, self.high = n, mean, m2, x.min(axis=0), x.max(axis=0)
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta ** 2 * (self.count * n / total)
        self.low, self.high = np.minimum(self.low, x.min(axis=0)), np.maximum(self.high, x.max(axis=0))
        self.count = total

    def moments(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """What mlcli.model.normalization_layer needs: (mean, variance), or minmax's (min, range^2)."""
        if kind == "standard":
            return self.mean, self.m2 / self.count
        return self.low, (self.high - self.low) ** 2


@dataclass
class _Plan:
    """How a split's raw chunks become model inputs: which rows, and labels to targets."""

    task: str
    classes: list | None
    label_kind: str | None  # CSV label text is read as this kind (int, float, str)
    only_classes: list | None  # data.classes
    select: str = "all"  # all | train | validation (the hash split of data.train)
    fraction: float = 0.0
    seed: int = 0
    file_starts: dict = field(default_factory=dict)  # path -> row number of its first row in data.train
    features: list | None = None  # typed features' plans (mlcli.data.feature_types); None: float features


class StreamSplit:
    """A split read from disk each time it is used; `rows` are counted by the first pass.

    It offers the interface of an in-memory split (mlcli.data.split); Normalization is fitted from
    the statistics the first pass computed (`statistics`), not from rows.
    """

    streamed = True

    def __init__(self, name: str, source: ChunkSource, plan: _Plan, rows: int, statistics: Moments | None = None):
        self.name, self.source, self.plan, self.rows = name, source, plan, rows
        self.statistics = statistics
        self.notes: list[str] = []
        self._lookup = np.asarray(plan.classes, dtype=object if plan.label_kind == "str" else None) \
            if plan.classes is not None else None

    @property
    def normalization_input(self) -> Moments | None:
        return self.statistics

    def chunks(self, rng: np.random.Generator | None = None):
        """(x, y) of this split's rows, chunk by chunk: x float32 (typed features: {column: values},
        rows missing a `missing: drop` feature left out); y is class indices (int32) or targets."""
        for unit, offset, x, labels, keep in self.raw_chunks(rng):
            if not keep.all():
                index = np.flatnonzero(keep)
                x, labels = take_rows(x, index), [values[index] for values in labels]
            if row_count(x):
                yield x, self._targets(labels, unit, offset)

    def raw_chunks(self, rng: np.random.Generator | None = None):
        """(unit, offset, x, labels, keep) of every chunk: `keep` marks this split's rows."""
        plan = self.plan
        order = rng.permutation(len(self.source.units)) if rng is not None else None
        for unit, offset, table in self.source.chunks(order):
            if plan.features is None:
                x = self.source.features(table, unit, offset)
                keep = np.ones(len(x), dtype=bool)
            else:
                x, keep, _ = self.source.typed_features(table, unit, offset, plan.features)
            labels = self.source.labels(table, unit, offset, plan.label_kind)
            if plan.select != "all":
                rows = plan.file_starts[unit.path] + offset + np.arange(len(keep), dtype=np.uint64)
                held = held_out(rows, plan.seed, plan.fraction)
                keep &= held if plan.select == "validation" else ~held
            if plan.only_classes is not None:
                keep &= in_classes(labels[0], plan.only_classes)
            yield unit, offset, x, labels, keep

    def _targets(self, labels: list[np.ndarray], unit, offset: int) -> np.ndarray:
        spec = self.source.file_source(unit.path).spec
        if self.plan.task == "regression":
            return regression_targets(label_array(labels), self.source.role, spec, self.source.label_names, offset)
        values = labels[0]
        if (values.dtype == object) == (self._lookup.dtype == object):  # sorted vocabulary: binary search
            found = np.minimum(np.searchsorted(self._lookup, values), len(self._lookup) - 1)
            if np.array_equal(self._lookup[found], values):
                return found.astype(np.int32)
        # An unknown label (or mixed kinds): class_indices maps by value and names the first bad one.
        return class_indices(values, self.plan.classes, self.source.role, spec, offset)

    def head(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = next(self.chunks())
        return take_rows(x, slice(0, rows)), y[:rows]

    # ---- tf.data ----------------------------------------------------------------------------

    def training_dataset(self, *, batch_size: int, seed: int, shuffle: bool, epoch, encoding: str,
                         num_classes: int, first_step: int = 0):
        """One epoch of global batches in the order fixed by (seed, epoch); `epoch` is the run's
        tf.Variable, read when Keras starts the epoch's iterator (as the in-memory pipeline does)."""

        tf = import_tensorflow()
        steps = steps_per_epoch(self.rows, batch_size)

        def generate(epoch_value):
            rng = np.random.default_rng([seed & _MASK64, int(epoch_value)]) if shuffle else None
            yield from itertools.islice(batches(self.chunks(rng), batch_size, rng), first_step, None)

        def one_epoch(_):
            return tf.data.Dataset.from_generator(generate, args=(epoch.read_value(),),
                                                  output_signature=self._signature(tf))

        dataset = tf.data.Dataset.from_tensors(0).flat_map(one_epoch)
        dataset = dataset.map(lambda x, y: (x, encode(tf, y, encoding, num_classes)))
        return dataset.apply(tf.data.experimental.assert_cardinality(steps - first_step)).prefetch(2)

    def evaluation_dataset(self, *, batch_size: int, encoding: str, num_classes: int):
        tf = import_tensorflow()
        dataset = tf.data.Dataset.from_generator(lambda: batches(self.chunks(), batch_size, None),
                                                 output_signature=self._signature(tf))
        dataset = dataset.map(lambda x, y: (x, encode(tf, y, encoding, num_classes)))
        return dataset.apply(tf.data.experimental.assert_cardinality(steps_per_epoch(self.rows, batch_size))) \
            .prefetch(2)

    def _signature(self, tf):
        if self.plan.task == "regression":
            y = tf.TensorSpec((None, len(self.source.label_names)), tf.float32)
        else:
            y = tf.TensorSpec((None,), tf.int32)
        if self.plan.features is not None:
            return {p.name: tf.TensorSpec((None, 4 if p.type == "date" else 1),
                                          tf.float32 if p.type in ("numeric", "date") else tf.string)
                    for p in self.plan.features}, y
        return tf.TensorSpec((None, len(self.source.feature_names)), tf.float32), y


def batches(chunks, size: int, rng: np.random.Generator | None, window: int = SHUFFLE_BUFFER_ROWS):
    """Chunks -> batches of `size` rows (the last one shorter). With `rng`, rows are shuffled within
    windows of about `window` rows; without, they keep their order."""
    xs: list = []
    ys: list = []
    held = 0
    for x, y in chunks:
        xs.append(x)
        ys.append(y)
        held += row_count(x)
        if held >= (max(window, size) if rng is not None else size):
            x_all, y_all = _joined(xs, ys, rng)
            rows = row_count(x_all)
            full = rows // size * size
            for start in range(0, full, size):
                yield take_rows(x_all, slice(start, start + size)), y_all[start:start + size]
            xs, ys, held = [take_rows(x_all, slice(full, None))], [y_all[full:]], rows - full
    if held:
        x_all, y_all = _joined(xs, ys, rng)
        for start in range(0, row_count(x_all), size):
            yield take_rows(x_all, slice(start, start + size)), y_all[start:start + size]


def _joined(xs: list, ys: list, rng):
    x, y = (xs[0], ys[0]) if len(xs) == 1 else (concat_rows(xs), np.concatenate(ys))
    if rng is not None:
        order = rng.permutation(row_count(x))
        x, y = take_rows(x, order), y[order]
    return x, y
