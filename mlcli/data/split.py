"""A split of a run's data: in memory (`Split`, here) or streamed from disk (mlcli.data.stream.StreamSplit).

Both types offer the same interface, so training, validation and `evaluate` never ask which one
they hold:

    name                 train | validation | test (evaluate: the role of its data)
    rows                 how many rows it holds (streamed: counted by the first pass)
    streamed             False here, True from disk: what run.json and the summaries say (a streamed
                         split is not held in memory: no confusion matrix is drawn from it)
    notes                what to tell the user about how the split is read
    normalization_input  what the Normalization layer is fitted from: the rows (here), or the statistics
                         computed chunk by chunk (streamed; None when data.normalize is none)
    head(rows)           (x, y) of its first rows
    training_dataset(batch_size=, seed=, shuffle=, epoch=, encoding=, num_classes=, first_step=)
                         one epoch of batches in the order fixed by (seed, epoch)
    evaluation_dataset(batch_size=, encoding=, num_classes=)
                         batches in row order

x is float32 features (typed features: {column: values}, mlcli.data.typed_values); y is class indices (int32) or regression targets (float32, (rows, targets)),
encoded for the loss inside the datasets (mlcli.data.labels.encode). Call the datasets through
mlcli.data.pipeline, which adds what every split needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlcli.data.labels import encode
from mlcli.data.pipeline import steps_per_epoch
from mlcli.data.typed_values import row_count, take_rows
from mlcli.runtime import import_tensorflow


@dataclass
class Split:
    """One split in memory: float32 features and encoded-later targets.

    Training batches are gathered by index from a per-epoch permutation that depends only on
    (seed, epoch): shuffling is seeded, needs no iterator state, and a resumed run at epoch k sees
    exactly the batches an uninterrupted run would. Gathering a whole batch at once is also much
    cheaper than slicing row by row.
    """

    x: np.ndarray | dict  # typed features: {column: values}
    y: np.ndarray  # int32 class indices (classification) or float32 (rows, targets) (regression)
    name: str
    notes: list[str] = field(default_factory=list)

    streamed = False

    @property
    def rows(self) -> int:
        return row_count(self.x)

    @property
    def normalization_input(self) -> np.ndarray:
        return self.x

    def head(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        return take_rows(self.x, slice(0, rows)), self.y[:rows]

    def training_dataset(self, *, batch_size: int, seed: int, shuffle: bool, epoch, encoding: str,
                         num_classes: int, first_step: int = 0):

        tf = import_tensorflow()
        rows = self.rows
        steps = steps_per_epoch(rows, batch_size)
        if isinstance(self.x, np.ndarray):
            self.x = aligned(self.x)  # the unaligned array is dropped: one copy of the rows stays
        x = tf.nest.map_structure(lambda values: constant(tf, values), self.x)
        y = constant(tf, self.y)

        @tf.autograph.experimental.do_not_convert  # branches only on Python values: AutoGraph would only add start-up time
        def epoch_indices(_):
            order = tf.range(rows, dtype=tf.int64)
            if shuffle:
                order = tf.random.experimental.stateless_shuffle(
                    order, seed=tf.stack([tf.constant(seed, tf.int64), epoch.read_value()])
                )
            order = order[first_step * batch_size:]
            full = (rows - first_step * batch_size) // batch_size  # whole batches, then the rest (if any)
            batches = tf.data.Dataset.from_tensor_slices(tf.reshape(order[:full * batch_size], (full, batch_size)))
            if full < steps - first_step:
                batches = batches.concatenate(tf.data.Dataset.from_tensors(order[full * batch_size:]))
            return batches

        @tf.autograph.experimental.do_not_convert
        def gather(index):
            return (tf.nest.map_structure(lambda values: tf.gather(values, index), x),
                    encode(tf, tf.gather(y, index), encoding, num_classes))

        # The per-epoch function (flat_map's, made anew at every epoch) yields only each batch's row
        # indices; the rows are gathered outside it. Gathered inside it, capturing the rows, it cost
        # about 35 ms more CPU per epoch for 900 images of 96x96 (docs/performance.md).
        dataset = tf.data.Dataset.from_tensors(0).flat_map(epoch_indices)
        dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps - first_step))
        return dataset.prefetch(tf.data.AUTOTUNE)

    def evaluation_dataset(self, *, batch_size: int, encoding: str, num_classes: int):
        tf = import_tensorflow()
        dataset = tf.data.Dataset.from_tensor_slices((self.x, self.y)).batch(batch_size)
        dataset = dataset.map(tf.autograph.experimental.do_not_convert(
            lambda x, y: (x, encode(tf, y, encoding, num_classes))))
        return dataset.cache().prefetch(tf.data.AUTOTUNE)


ALIGNMENT = 64  # bytes: what TensorFlow's CPU kernels assume of a tensor's memory (Eigen's widest vectors)


def _is_aligned(values: np.ndarray) -> bool:
    return values.flags.c_contiguous and values.ctypes.data % ALIGNMENT == 0


def aligned(values: np.ndarray) -> np.ndarray:
    """`values`, or a C-contiguous copy of it whose memory starts on an ALIGNMENT-byte boundary."""
    if _is_aligned(values):
        return values
    buffer = np.empty(values.nbytes + ALIGNMENT, dtype=np.uint8)
    start = -buffer.ctypes.data % ALIGNMENT
    out = buffer[start:start + values.nbytes].view(values.dtype).reshape(values.shape)
    out[...] = values
    return out


def constant(tf, values):
    """`values` as a constant tensor. An aligned, C-contiguous array of numbers is handed to TensorFlow
    through DLPack, sharing its memory (the array stays alive as long as the tensor): tf.constant
    would copy it, and its allocator keeps a second copy's worth after the conversion."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu" and values.size and _is_aligned(values):
        return tf.experimental.dlpack.from_dlpack(values.__dlpack__())
    return tf.constant(values)
