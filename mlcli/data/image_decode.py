"""Image files to float32 arrays of one shape, with TensorFlow: decode, convert to data.image.channels,
resize to data.image.size (cropping to its aspect ratio when asked). Values stay in [0, 255]: scaling is
the model's (mlcli.model.image_input), so predict on image files computes exactly what training did.

The same decoding as keras.utils.image_dataset_from_directory (tf.io.decode_image without animations,
then smart_resize or tf.image.resize, bilinear), so a plain Keras script sees the same pixels.
GIF and BMP decode only to their own channels in TensorFlow; they are converted afterwards.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlcli.errors import DataError, first_line
from mlcli.runtime import import_tensorflow

DECODE_BATCH = 64


def image_decoder(size: tuple[int, int], channels: int, crop_to_aspect_ratio: bool, from_bytes: bool = False):
    """A function (file path tensor) -> float32 (height, width, channels) tensor, usable in tf.data;
    `from_bytes`: the function takes the file's bytes instead of its path (mlcli serve's requests) and
    decodes them the same way."""
    tf = import_tensorflow()
    from keras.preprocessing.image import smart_resize  # deferred: imports TensorFlow

    height, width = size

    def convert(image):  # GIF, BMP: 3 or 4 channels as decoded
        rgb = tf.ensure_shape(image[..., :3], [None, None, 3])
        if channels == 1:
            return tf.image.rgb_to_grayscale(rgb)
        if channels == 3:
            return rgb
        alpha = tf.cond(tf.shape(image)[-1] == 4, lambda: image[..., 3:4],
                        lambda: tf.fill(tf.concat([tf.shape(image)[:2], [1]], 0), tf.constant(255, image.dtype)))
        return tf.concat([rgb, tf.ensure_shape(alpha, [None, None, 1])], -1)

    def decode(path):
        data = path if from_bytes else tf.io.read_file(path)
        decoded_as_is = tf.strings.regex_full_match(tf.strings.substr(data, 0, 3), "GIF|BM.")
        image = tf.cond(
            decoded_as_is,
            lambda: convert(tf.io.decode_image(data, channels=0, expand_animations=False)),
            lambda: tf.ensure_shape(tf.io.decode_image(data, channels=channels, expand_animations=False),
                                    [None, None, channels]),
        )
        if crop_to_aspect_ratio:
            image = smart_resize(image, (height, width), interpolation="bilinear")
        else:
            image = tf.image.resize(image, (height, width), method="bilinear")
        image = tf.cast(image, tf.float32)
        image.set_shape((height, width, channels))
        return image

    return decode


def decode_all(paths: tuple[Path, ...] | list[bytes], decoder, role: str, names: list[str] | None = None) -> np.ndarray:
    """Every image decoded, in order, as one float32 array (rows, height, width, channels); a file that
    does not decode is exit 3 naming it. `paths` may be files' bytes (a decoder made with from_bytes),
    then `names` names them in messages."""
    out = list(_decoded_batches(paths, decoder, role, names))
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def check_all(paths: tuple[Path, ...], decoder, role: str) -> None:
    """Decode every image and keep none: exit 3 naming the first file that does not decode. For images
    read from their files at every epoch, whose decoding error inside training names no file."""
    for _ in _decoded_batches(paths, decoder, role, None):
        pass


def _decoded_batches(paths, decoder, role: str, names: list[str] | None):
    tf = import_tensorflow()
    items = [p if isinstance(p, bytes) else str(p) for p in paths]
    names = names or [str(p) for p in paths]
    dataset = tf.data.Dataset.from_tensor_slices(items).map(decoder, num_parallel_calls=tf.data.AUTOTUNE,
                                                            deterministic=True).batch(DECODE_BATCH)
    iterator = iter(dataset)
    start = 0
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.InvalidArgumentError as exc:
            raise _which_failed(items[start:start + DECODE_BATCH], names[start:start + DECODE_BATCH], decoder, role,
                                exc) from None
        yield batch.numpy()
        start += len(batch)


def _which_failed(items: list, names: list[str], decoder, role: str, error) -> DataError:
    tf = import_tensorflow()
    for item, name in zip(items, names):
        try:
            decoder(tf.constant(item))
        except tf.errors.InvalidArgumentError as exc:
            return corrupt_image(role, name, exc)
    return DataError(f"{role}: an image could not be decoded: {first_line(error.message)}")


def corrupt_image(role: str, name: str, exc) -> DataError:
    reason = first_line(getattr(exc, "message", str(exc))).split("}}")[-1].split(" [Op:")[0].strip(" :")
    return DataError(f"{role}: {name}: cannot be decoded as an image ({reason or 'corrupt data'})",
                     hint="remove the file or replace it with a valid image")
