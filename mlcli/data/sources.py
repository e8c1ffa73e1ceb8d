"""Where data comes from: files (.csv .parquet .npz, mlcli.data.formats) and the bundled
`builtin:NAME[/SPLIT]` sets. Every problem is a DataError naming the file and what was expected.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mlcli.data import formats
from mlcli.errors import DataError

BUILTIN_SETS = {"digits": "classification", "diabetes": "regression", "churn": "classification",
                "penguins": "classification", "autompg": "regression"}


@dataclass(frozen=True)
class Source:
    spec: str  # as the user wrote it, for messages and run.json
    paths: tuple[Path, ...]
    format: str  # a format's NAME: csv | parquet | npz

    @property
    def builtin(self) -> bool:
        return self.spec.startswith("builtin:")

    @property
    def format_module(self):
        """The mlcli.data.formats module that reads these files."""
        return formats.named(self.format)

    def describe(self) -> str:
        return self.spec

    def file(self, path: Path) -> Source:
        """One of its files, as messages name it: the spec for a single file, the shard's path in a glob."""
        return self if len(self.paths) == 1 else Source(str(path), (path,), self.format)


def builtin_path(name: str, split: str) -> Path:
    return Path(str(resources.files("mlcli.datasets").joinpath(f"{name}_{split}.csv.gz")))


def resolve(spec: str, role: str = "data") -> Source:
    """`builtin:digits/train`, `data/x.csv`, `shards/part-*.parquet` -> the files to read."""
    if spec.startswith("builtin:"):
        name, _, split = spec[len("builtin:"):].partition("/")
        if name not in BUILTIN_SETS:
            raise DataError(
                f"{role}: unknown built-in data set {name!r} — expected one of "
                + ", ".join(f"builtin:{n}" for n in BUILTIN_SETS)
            )
        if split not in ("", "train", "test"):
            raise DataError(f"{role}: {spec!r}: unknown split {split!r} — expected /train, /test, or none (both)")
        splits = ("train", "test") if split == "" else (split,)
        return Source(spec, tuple(builtin_path(name, s) for s in splits), "csv")
    if any(ch in spec for ch in "*?["):
        matches = sorted(Path(p) for p in glob.glob(spec))
        if not matches:
            raise DataError(f"{role}: no file matches {spec!r} — check the pattern ({_relative_to(role)})")
        names = {formats.of_file(p, role).NAME for p in matches}
        if len(names) > 1:
            raise DataError(f"{role}: {spec!r} matches files of different formats ({', '.join(sorted(names))})")
        return Source(spec, tuple(matches), names.pop())
    path = Path(spec)
    if not path.exists():
        raise DataError(f"{role}: {spec}: file not found — check the path ({_relative_to(role)})")
    if path.is_dir():
        raise DataError(f"{role}: {spec}: is a directory — expected a {formats.expected()} file",
                        hint="for a folder of images with one subfolder per class, add data.image: {size: [H, W]}")
    if not os.access(path, os.R_OK):
        raise DataError(f"{role}: {spec}: permission denied — the file is not readable")
    return Source(spec, (path,), formats.of_file(path, role).NAME)


def _relative_to(role: str) -> str:
    """What a relative path is read against: a config's data paths (data.train, ...) the config file,
    a path on the command line (predict INPUT, evaluate --data) the working directory."""
    if role.startswith("data."):
        return "paths in a config are relative to the config file"
    return f"a path on the command line is relative to the working directory, {os.getcwd()}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def same_file_warnings(data) -> list[str]:
    """A warning for each of data.validation (a path) and data.test that reads a file data.train reads
    too: its scores would be on rows the model was trained on (docs/contract.md §6)."""
    if not isinstance(data.train, str):
        return []
    try:
        train = {p.resolve() for p in resolve(data.train, "data.train").paths}
    except DataError:
        return []  # reading data.train reports it
    out = []
    for role in ("validation", "test"):
        spec = getattr(data, role)
        if not isinstance(spec, str):
            continue
        try:
            shared = sorted(str(p) for p in resolve(spec, f"data.{role}").paths if p.resolve() in train)
        except DataError:
            continue
        if shared:
            out.append(f"warning: data.{role} ({spec}) reads the same file as data.train ({shared[0]}): its "
                       f"scores are on rows the model trained on, not on unseen data — give data.{role} a "
                       "separate file" + (", or a fraction such as 0.2" if role == "validation" else ""))
    return out
