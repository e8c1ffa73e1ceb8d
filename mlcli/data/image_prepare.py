"""A run's image splits (docs/contract.md §7): files listed and checked (mlcli.data.image_files), the
class vocabulary, the seeded stratified validation split (mlcli.data.prepare's), then each split
decoded once into memory when the decoded images fit (the cache), or read from its files at every
epoch (mlcli.data.image_split).

data.stream for images: false decodes into memory (exit 3 when that would not fit), true reads the
files at every epoch, auto decodes into memory when every split fits in memory and takes at most
1 GiB, and reads the files otherwise.
"""

from __future__ import annotations

import numpy as np

from mlcli import limits
from mlcli.config.schema import Config
from mlcli.data.image_files import ImageList, list_labelled
from mlcli.data.labels import adopt_vocabulary, class_indices, single_class_error, sorted_vocabulary
from mlcli.data.prepare import Prepared, stratified_split
from mlcli.data.split import Split
from mlcli.errors import DataError

IN_MEMORY_BYTES = 1 << 30  # data.stream: auto keeps decoded images in memory up to this much


def image_facts(config: Config) -> dict:
    """run.json's and the model's `inputs`: what the model takes (docs/contract.md §7)."""
    image = config.data.image
    return {"kind": "image", "size": list(image.size), "channels": image.channels,
            "crop_to_aspect_ratio": image.crop_to_aspect_ratio, "path_column": image.path_column}


def list_split(config: Config, role: str) -> ImageList:
    data = config.data
    return list_labelled(getattr(data, role), f"data.{role}", data.image.path_column, data.label_columns()[0])


def prepare_images(config: Config, vocabulary: list | None = None) -> Prepared:
    from mlcli.data.image_decode import image_decoder  # deferred: imports TensorFlow

    data = config.data
    image = data.image
    train = train_images(config)
    classes = sorted_vocabulary(train.labels)
    if len(classes) < 2:
        raise single_class_error(train.spec, "(class folders)" if train.kind == "folder" else data.label_columns()[0],
                                 classes[0], data.classes)
    notes: list[str] = []
    classes = adopt_vocabulary(classes, vocabulary, notes)
    files = {"train": train.facts()}
    validation = None
    if isinstance(data.validation, float):
        train, validation = split_validation(config, train)
    elif isinstance(data.validation, str):
        validation = _keep_classes(list_split(config, "validation"), data.classes)
        files["validation"] = validation.facts()
    test = None
    if data.test is not None:
        test = _keep_classes(list_split(config, "test"), data.classes)
        files["test"] = test.facts()
    for images, role in ((train, "data.train"), (validation, "data.validation"), (test, "data.test")):
        note = images.note(role) if images is not None else None
        if note and note not in notes:
            notes.append(note)

    height, width = image.size
    shape = (height, width, image.channels)
    decoder = image_decoder((height, width), image.channels, image.crop_to_aspect_ratio)
    splits = [(s, name) for s, name in ((train, "train"), (validation, "validation"), (test, "test")) if s is not None]
    in_memory = _in_memory(config, sum(s.rows for s, _ in splits) * int(np.prod(shape)) * 4)
    if not in_memory:
        notes.append("images are read from their files at every epoch (data.stream"
                     + (": true)" if data.stream is True else f": auto — decoded they would take more than "
                        f"{limits.size_text(IN_MEMORY_BYTES)} or the memory available)"))

    def to_split(images: ImageList | None, name: str):
        if images is None:
            return None
        y = class_indices(images.labels, classes, f"data.{name}", images.spec)
        if in_memory:
            from mlcli.data.image_decode import decode_all  # deferred: imports TensorFlow

            return Split(decode_all(images.paths, decoder, f"data.{name}"), y, name)
        from mlcli.data.image_split import ImageFileSplit  # deferred: only when images are read per epoch

        return ImageFileSplit(images, y, decoder, name)

    return Prepared(
        task="classification",
        classes=classes,
        feature_names=["image"],
        label_names=data.label_columns() if train.kind != "folder" else ["label"],
        input_shape=shape,
        train=to_split(train, "train"),
        validation=to_split(validation, "validation"),
        test=to_split(test, "test"),
        files=files,
        notes=notes,
        inputs=image_facts(config),
    )


def split_validation(config: Config, train: ImageList) -> tuple[ImageList, ImageList]:
    """(train, validation) of a fractional data.validation: stratified and seeded as for tables. The one
    place the split is made: `mlcli evaluate` calls it again to get back the images the run validated on."""
    labels = train.labels.astype(str) if train.labels.dtype == object else train.labels
    keep, held = stratified_split(labels, config.data.validation, config.seed)
    if len(held) == 0:
        raise DataError(f"data.validation: {config.data.validation} of {train.rows} training images is an empty "
                        "split — use a larger fraction, a validation folder, or null")
    return train.take(keep), train.take(held)


def train_images(config: Config) -> ImageList:
    """data.train's images as training lists them (data.classes applied)."""
    return _keep_classes(list_split(config, "train"), config.data.classes)


def _in_memory(config: Config, need: int) -> bool:
    stream = config.data.stream
    if stream is True:
        return False
    if stream is False:
        limits.fits(limits.Declared(need, need), f"data.train: {config.data.train} (the images decoded)")
        return True
    limit, _ = limits.memory_limit()
    return need <= IN_MEMORY_BYTES and (limit is None or need <= limit)


def _keep_classes(images: ImageList, classes: list | None) -> ImageList:
    if classes is None:
        return images
    keep = np.flatnonzero(np.isin(images.labels.astype(str), [str(c) for c in classes]))
    if len(keep) == 0:
        raise DataError(f"{images.spec}: no image has a label in data.classes {classes}")
    return images.take(keep)
