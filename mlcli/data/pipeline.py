"""tf.data pipelines over in-memory splits.

Training batches are gathered by index from a per-epoch permutation that depends only on
(seed, epoch): shuffling is seeded, needs no iterator state, and a resumed run at epoch k sees
exactly the batches an uninterrupted run would. Gathering a whole batch at once is also much
cheaper than slicing row by row.
"""

from __future__ import annotations

import math

import numpy as np

from mlcli.data.labels import as_numpy_targets, encode
from mlcli.data.prepare import Split


def steps_per_epoch(rows: int, batch_size: int) -> int:
    return max(1, math.ceil(rows / batch_size))


def training_dataset(split: Split, *, batch_size: int, seed: int, shuffle: bool, epoch, encoding: str,
                     num_classes: int, first_step: int = 0):
    """One epoch of batches, in the order fixed by (seed, epoch); `epoch` is a tf.Variable that the
    run sets at each epoch's start (Keras makes a new iterator per epoch, which reads it then).

    One epoch per iterator matters: Keras runs `steps_per_execution` steps per call until the data
    runs out, so an endless stream would let the last call of an epoch eat into the next one.
    `first_step` skips the batches a mid-epoch resume has already trained on.
    A streamed split (mlcli.data.stream) builds its own, with the same contract.
    """
    if getattr(split, "streamed", False):
        return _sharded_by_data(split.training_dataset(
            batch_size=batch_size, seed=seed, shuffle=shuffle, epoch=epoch, encoding=encoding,
            num_classes=num_classes, first_step=first_step))
    from mlcli.runtime import import_tensorflow

    tf = import_tensorflow()
    rows = split.rows
    steps = steps_per_epoch(rows, batch_size)
    x = tf.constant(split.x)
    y = tf.constant(split.y)

    def epoch_batches(_):
        order = tf.range(rows, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(
                order, seed=tf.stack([tf.constant(seed, tf.int64), epoch.read_value()])
            )

        def gather(step):
            index = order[step * batch_size: (step + 1) * batch_size]
            return tf.gather(x, index), encode(tf, tf.gather(y, index), encoding, num_classes)

        return tf.data.Dataset.range(first_step, steps).map(gather, num_parallel_calls=tf.data.AUTOTUNE,
                                                             deterministic=True)

    dataset = tf.data.Dataset.from_tensors(0).flat_map(epoch_batches)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps - first_step))
    return _sharded_by_data(dataset.prefetch(tf.data.AUTOTUNE))


def evaluation_dataset(split: Split, *, batch_size: int, encoding: str, num_classes: int):
    """Batches in row order, for validation, test and evaluate."""
    if getattr(split, "streamed", False):
        return _sharded_by_data(split.evaluation_dataset(batch_size=batch_size, encoding=encoding,
                                                         num_classes=num_classes))
    from mlcli.runtime import import_tensorflow

    tf = import_tensorflow()
    dataset = tf.data.Dataset.from_tensor_slices((split.x, split.y)).batch(batch_size)
    dataset = dataset.map(lambda x, y: (x, encode(tf, y, encoding, num_classes)))
    return _sharded_by_data(dataset.cache().prefetch(tf.data.AUTOTUNE))


def _sharded_by_data(dataset):
    """Under MultiWorkerMirroredStrategy, each worker keeps its own part of every global batch (DATA
    sharding): the batches, and so the steps, are those of a one-worker run. Without a strategy, or
    on one machine, the option changes nothing."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def first_rows(split, rows: int, encoding: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, targets as the loss sees them) of a split's first rows, in memory or streamed."""
    if getattr(split, "streamed", False):
        x, y = split.head(rows)
        split = Split(x, y, split.name)
    return split.x[:rows], as_numpy_targets(split.y[:rows], encoding, num_classes)
