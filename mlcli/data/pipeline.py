"""tf.data over any split, in memory or streamed (mlcli.data.split describes what both offer).

Each split builds its own batches; these functions ask it for them and add what every split needs.
"""

from __future__ import annotations

import math

import numpy as np

from mlcli.data.labels import as_numpy_targets


def steps_per_epoch(rows: int, batch_size: int) -> int:
    return max(1, math.ceil(rows / batch_size))


def training_dataset(split, *, batch_size: int, seed: int, shuffle: bool, epoch, encoding: str,
                     num_classes: int, first_step: int = 0, augment=None):
    """One epoch of batches, in the order fixed by (seed, epoch); `epoch` is a tf.Variable that the
    run sets at each epoch's start (Keras makes a new iterator per epoch, which reads it then).

    One epoch per iterator matters: Keras runs `steps_per_execution` steps per call until the data
    runs out, so an endless stream would let the last call of an epoch eat into the next one.
    `first_step` skips the batches a mid-epoch resume has already trained on. `augment`: a function
    (x, y) -> (x, y) applied to each training batch (data.augment, mlcli.model.augment).
    """
    dataset = split.training_dataset(
        batch_size=batch_size, seed=seed, shuffle=shuffle, epoch=epoch, encoding=encoding,
        num_classes=num_classes, first_step=first_step)
    if augment is not None:
        import tensorflow as tf  # deferred: imports TensorFlow

        dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
            tf.data.AUTOTUNE)
    return _sharded_by_data(dataset)


def evaluation_batch_size(training_batch_size: int) -> int:
    """The batch evaluation runs in: validation and test during training, evaluate and predict after.
    At least 256 rows (no gradients are kept, so larger batches only save steps); the same rule
    everywhere, so a prediction and the metrics of the same rows are the same computation."""
    return max(training_batch_size, 256)


def evaluation_dataset(split, *, batch_size: int, encoding: str, num_classes: int):
    """Batches in row order, for validation, test and evaluate."""
    return _sharded_by_data(split.evaluation_dataset(batch_size=batch_size, encoding=encoding,
                                                     num_classes=num_classes))


def _sharded_by_data(dataset):
    """Under MultiWorkerMirroredStrategy, each worker keeps its own part of every global batch (DATA
    sharding): the batches, and so the steps, are those of a one-worker run. Without a strategy, or
    on one machine, the option changes nothing."""
    import tensorflow as tf  # deferred: imports TensorFlow

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def first_rows(split, rows: int, encoding: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, targets as the loss sees them) of a split's first rows."""
    x, y = split.head(rows)
    return x, as_numpy_targets(y, encoding, num_classes)
