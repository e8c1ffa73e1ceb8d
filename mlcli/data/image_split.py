"""A split of images read from their files at every epoch (the interface of mlcli.data.split): used when
the decoded images would not fit in memory, or with data.stream: true. Images that fit are decoded once
into a mlcli.data.split.Split instead (the cache), which then serves every epoch from memory.

The order of an epoch depends only on (seed, epoch), as in memory, so a resumed run sees the same
batches an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlcli.data.image_files import ImageList
from mlcli.data.labels import encode
from mlcli.data.pipeline import steps_per_epoch
from mlcli.runtime import import_tensorflow


@dataclass
class ImageFileSplit:
    images: ImageList
    y: np.ndarray  # int32 class indices
    decoder: object  # mlcli.data.image_decode.image_decoder's function
    name: str
    notes: list[str] = field(default_factory=list)

    streamed = True
    normalization_input = None

    @property
    def rows(self) -> int:
        return self.images.rows

    def head(self, rows: int):
        from mlcli.data.image_decode import decode_all  # deferred: imports TensorFlow

        return decode_all(self.images.paths[:rows], self.decoder, f"data.{self.name}"), self.y[:rows]

    def _paths(self):
        tf = import_tensorflow()
        return tf.constant([str(p) for p in self.images.paths])

    def training_dataset(self, *, batch_size: int, seed: int, shuffle: bool, epoch, encoding: str,
                         num_classes: int, first_step: int = 0):
        tf = import_tensorflow()
        rows = self.rows
        steps = steps_per_epoch(rows, batch_size)
        paths, y, decoder = self._paths(), tf.constant(self.y), self.decoder

        def epoch_batches(_):
            order = tf.range(rows, dtype=tf.int64)
            if shuffle:
                order = tf.random.experimental.stateless_shuffle(
                    order, seed=tf.stack([tf.constant(seed, tf.int64), epoch.read_value()]))
            order = order[first_step * batch_size:]
            return tf.data.Dataset.from_tensor_slices(order).map(
                lambda i: (decoder(tf.gather(paths, i)), tf.gather(y, i)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(batch_size)

        dataset = tf.data.Dataset.from_tensors(0).flat_map(epoch_batches)
        dataset = dataset.map(lambda x, labels: (x, encode(tf, labels, encoding, num_classes)))
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps - first_step))
        return dataset.prefetch(tf.data.AUTOTUNE)

    def evaluation_dataset(self, *, batch_size: int, encoding: str, num_classes: int):
        tf = import_tensorflow()
        dataset = tf.data.Dataset.from_tensor_slices((self._paths(), tf.constant(self.y)))
        dataset = dataset.map(lambda p, labels: (self.decoder(p), labels), num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=True).batch(batch_size)
        dataset = dataset.map(lambda x, labels: (x, encode(tf, labels, encoding, num_classes)))
        return dataset.prefetch(tf.data.AUTOTUNE)

    def check_files(self) -> None:
        """Exit 3 naming the first of this split's files that does not decode (a pass that keeps nothing)."""
        from mlcli.data.image_decode import check_all  # deferred: imports TensorFlow

        check_all(self.images.paths, self.decoder, f"data.{self.name}")


def unreadable_image(prepared, error: BaseException):
    """The DataError naming the image file behind a decoding `error` raised inside training (images read
    from their files at every epoch: TensorFlow's message names no file), or None when `error` is not
    one, or no file of the run's streamed image splits fails to decode."""
    splits = [s for s in (prepared.train, prepared.validation, prepared.test) if isinstance(s, ImageFileSplit)]
    if not splits or not isinstance(error, import_tensorflow().errors.InvalidArgumentError):
        return None
    from mlcli.errors import DataError  # deferred: only on this error path

    for split in splits:
        try:
            split.check_files()
        except DataError as found:
            return found
    return None
