"""Images for a trained model (evaluate, predict), decoded as its run decoded them: the size, channels
and cropping recorded in the checkpoint's `inputs` (run.json, or mlcli.json inside a .keras file).

predict reads an image file, a folder of images (recursively, in sorted order) or a CSV/Parquet table
with the path column, batch by batch: memory stays flat however many images there are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlcli import limits
from mlcli.data.image_files import ImageList, list_labelled, list_unlabelled
from mlcli.data.labels import class_indices
from mlcli.data.split import Split
from mlcli.errors import DataError


def decoder_for(inputs: dict, from_bytes: bool = False):
    """The run's decoder (its size, channels and cropping); `from_bytes`: it takes files' bytes, not paths."""
    from mlcli.data.image_decode import image_decoder  # deferred: imports TensorFlow

    return image_decoder(tuple(inputs["size"]), int(inputs["channels"]), bool(inputs.get("crop_to_aspect_ratio")),
                         from_bytes)


def path_column(inputs: dict) -> str:
    return inputs.get("path_column") or "path"


@dataclass
class ImageBatch:
    x: np.ndarray
    rows: int
    kept: list  # [the path column], as Arrow arrays
    kept_as_text: bool = False


@dataclass
class ImageInputReader:
    """predict's INPUT as batches of decoded images, each with its file's path."""

    images: ImageList
    inputs: dict
    batch_rows: int
    role: str = "input"
    extra: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, spec: str, inputs: dict, batch_rows: int, role: str = "input") -> ImageInputReader:
        images = list_unlabelled(spec, role, path_column(inputs))
        return cls(images, inputs, batch_rows, role)

    def notes(self) -> list[str]:
        note = self.images.note(self.role)
        return [note] if note else []

    def batches(self):
        import pyarrow as pa  # deferred: imports pyarrow

        from mlcli.data.image_decode import decode_all  # deferred: imports TensorFlow

        decoder = decoder_for(self.inputs)
        paths = self.images.paths
        for start in range(0, len(paths), self.batch_rows):
            chunk = paths[start:start + self.batch_rows]
            yield ImageBatch(decode_all(chunk, decoder, self.role), len(chunk), [pa.array([str(p) for p in chunk])])


def labelled_split(images: ImageList, inputs: dict, classes: list, role: str) -> Split:
    """A labelled set of images decoded into memory (evaluate: the confusion matrix needs every row)."""
    from mlcli.data.image_decode import decode_all  # deferred: imports TensorFlow

    size = images.rows * int(np.prod(inputs["size"])) * int(inputs["channels"]) * 4
    limits.fits(limits.Declared(size, size), f"{role}: {images.spec} (the images decoded)",
                hint=f"evaluate a smaller set of images, or set {limits.MEMORY_LIMIT_VAR} if the machine has the memory")
    y = class_indices(images.labels, classes, role, images.spec)
    return Split(decode_all(images.paths, decoder_for(inputs), role), y, role)


def list_for_evaluation(spec: str, inputs: dict, label: str, role: str, only_classes: list | None) -> ImageList:
    images = list_labelled(spec, role, path_column(inputs), label)
    if only_classes is not None:
        keep = np.flatnonzero(np.isin(images.labels.astype(str), [str(c) for c in only_classes]))
        if len(keep) == 0:
            raise DataError(f"{role}: {spec}: no image has a label in data.classes {only_classes}")
        images = images.take(keep)
    return images
