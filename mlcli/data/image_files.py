"""Which image files a split holds, and their labels: a folder with one subfolder per class, or a
CSV/Parquet table with a column of image paths (docs/contract.md §7). No TensorFlow here.

Every file is listed in a fixed order (sorted relative paths), so the same folder always gives the
same rows and the seeded shuffle and validation split repeat exactly. Every image's header is read
(mlcli.data.image_header) before any is decoded: a file that is not an image, or an image bomb, is
exit 3 naming it before a run directory is touched.

Files in a class folder whose name is not an image's (.png .jpg .jpeg .bmp .gif) — a README, a
.DS_Store — are left out and counted (one note), never guessed at.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from mlcli.data import formats
from mlcli.data.image_header import SUFFIXES, is_image_name, read_header
from mlcli.data.sources import sha256
from mlcli.errors import DataError

FOLDER = "folder"


@dataclass(frozen=True)
class ImageList:
    spec: str  # as the user wrote it
    paths: tuple[Path, ...]
    labels: np.ndarray | None  # one per path (None: predict input without labels)
    skipped: int = 0  # files that are not images, left out
    kind: str = FOLDER  # folder | a table format's name

    @property
    def rows(self) -> int:
        return len(self.paths)

    def take(self, index: np.ndarray) -> ImageList:
        labels = None if self.labels is None else self.labels[index]
        return ImageList(self.spec, tuple(self.paths[i] for i in index), labels, self.skipped, self.kind)

    def facts(self) -> list[dict]:
        """For run.json: one digest over every image (its relative path and sha256), so that a resumed
        run is refused when any image changed, without a line per image."""
        digest = hashlib.sha256()
        root = os.path.commonpath([str(p.parent) for p in self.paths]) if self.paths else ""
        for path in self.paths:  # relative paths: the same images elsewhere are the same data
            digest.update(f"{os.path.relpath(path, root)}\0{sha256(path)}\n".encode())
        facts = {"spec": self.spec, "rows": self.rows, "files": [{"path": self.spec, "sha256": digest.hexdigest(),
                                                                  "rows": self.rows}]}
        if self.skipped:
            facts["skipped"] = self.skipped
        return [facts]

    def note(self, role: str) -> str | None:
        if not self.skipped:
            return None
        return (f"{role}: {self.spec}: left out {self.skipped} file(s) that are not images (images end in "
                f"{' '.join(SUFFIXES)})")


BUILTIN_IMAGE_SETS = ("shapes",)


def builtin_folder(spec: str, role: str) -> Path:
    """`builtin:shapes/train` -> the bundled folder (mlcli/datasets/shapes/train)."""
    name, _, split = spec[len("builtin:"):].partition("/")
    if name not in BUILTIN_IMAGE_SETS:
        raise DataError(f"{role}: unknown built-in image set {name!r} — expected one of "
                        + ", ".join(f"builtin:{n}/train" for n in BUILTIN_IMAGE_SETS))
    if split not in ("train", "test"):
        raise DataError(f"{role}: {spec!r}: expected builtin:{name}/train or builtin:{name}/test")
    return Path(str(resources.files("mlcli.datasets").joinpath(name, split)))


def list_labelled(spec: str, role: str, path_column: str, label: str) -> ImageList:
    """A split with labels: a folder of class subfolders, or a table of paths and labels."""
    path = builtin_folder(spec, role) if spec.startswith("builtin:") else Path(spec)
    if not path.exists():
        raise DataError(f"{role}: {spec}: not found — expected a folder with one subfolder per class, or a CSV/"
                        "Parquet table of image paths (paths in a config are relative to the config file)")
    if path.is_dir():
        return _class_folders(path, spec, role, builtin=spec.startswith("builtin:"))
    return _table(path, spec, role, path_column, label, labelled=True)


def list_unlabelled(spec: str, role: str, path_column: str) -> ImageList:
    """predict's INPUT: an image file, a folder of images (recursively, sorted), or a table of paths."""
    path = builtin_folder(spec, role) if spec.startswith("builtin:") else Path(spec)
    if not path.exists():
        raise DataError(f"{role}: {spec}: not found — expected an image file, a folder of images, or a CSV/Parquet "
                        "table of image paths")
    if path.is_dir():
        images, skipped = _images_under(path)
        if not images:
            raise DataError(f"{role}: {spec}: holds no image files (images end in {' '.join(SUFFIXES)})")
        for image in images:
            read_header(image, f"{role}: {image}")
        return ImageList(spec, tuple(images), None, skipped)
    if is_image_name(path):
        read_header(path, f"{role}: {path}")
        return ImageList(spec, (path,), None)
    return _table(path, spec, role, path_column, None, labelled=False)


def _images_under(folder: Path) -> tuple[list[Path], int]:
    """Every image file below `folder` in sorted order, and how many other files there were."""
    images, skipped = [], 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if is_image_name(path):
            images.append(path)
        else:
            skipped += 1
    return images, skipped


def _class_folders(folder: Path, spec: str, role: str, builtin: bool = False) -> ImageList:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{role}: {spec}: has no subfolders — expected one subfolder per class, each holding that "
                        "class's images (e.g. images/cat/1.png, images/dog/2.png)")
    paths: list[Path] = []
    labels: list[str] = []
    skipped = sum(1 for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    for name in classes:
        images, others = _images_under(folder / name)
        if not images:
            raise DataError(f"{role}: {spec}: the class folder {name!r} holds no images (images end in "
                            f"{' '.join(SUFFIXES)}) — add its images or remove the folder")
        skipped += others
        paths += images
        labels += [name] * len(images)
    if not builtin:  # the bundled images are known good
        for path in paths:
            read_header(path, f"{role}: {path}")
    return ImageList(spec, tuple(paths), np.array(labels, dtype=object), skipped)


def _table(path: Path, spec: str, role: str, path_column: str, label: str | None, labelled: bool) -> ImageList:
    module = formats.of_file(path, role)
    if not module.TABULAR:
        raise DataError(f"{role}: {spec}: an image path table must be CSV or Parquet")
    table = module.read_table(path, role)
    wanted = [path_column] + ([label] if labelled else [])
    for column in wanted:
        if column not in table.column_names:
            key = "data.image.path_column" if column == path_column else "data.label"
            raise DataError(f"{role}: {spec}: has no column {column!r} ({key}) — its columns are "
                            f"{', '.join(table.column_names)}")
    names = table.column(path_column).to_pylist()
    base = path.parent
    paths = []
    for row, name in enumerate(names, start=1):
        if not isinstance(name, str) or not name:
            raise DataError(f"{role}: {spec}: row {row}: column {path_column!r} holds {name!r} — expected an image path")
        image = base / name
        what = f"{role}: {spec}: row {row}: {image}"
        if not image.is_file():
            raise DataError(f"{what}: file not found (paths in the table are relative to the table's folder, {base})")
        read_header(image, what)
        paths.append(image)
    if not paths:
        raise DataError(f"{role}: {spec}: has no rows — expected one row per image")
    labels = None
    if labelled:
        values = table.column(label).to_pylist()
        for row, value in enumerate(values, start=1):
            if value is None:
                raise DataError(f"{role}: {spec}: row {row}: the label column {label!r} is empty")
        labels = np.array(values, dtype=object) if any(isinstance(v, str) for v in values) else np.array(values)
    return ImageList(spec, tuple(paths), labels, 0, module.NAME)
