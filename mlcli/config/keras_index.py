"""The index of Keras's public API that mlcli ships (keras_index.json.gz), read without importing
Keras, so that `mlcli validate` and train's first checks know every Keras name and argument in well
under a second. `make keras-index` (mlcli.config.keras_index_build) writes it from the installed
Keras; when the installed Keras is another version, mlcli.config.keras_checks reads the classes a
config names from Keras itself instead.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import json
from pathlib import Path
from typing import Callable

INDEX_FILE = Path(__file__).with_name("keras_index.json.gz")
FORMAT = 1

def installed_keras() -> str | None:
    """The installed Keras version, read from its package metadata (importing Keras takes seconds)."""
    try:
        return importlib.metadata.version("keras")
    except importlib.metadata.PackageNotFoundError:
        return None


class KerasIndex:
    """Lookups into the index: which names a config may use and what each class accepts."""

    def __init__(self, data: dict, describe: Callable[[str, str], dict | None] | None = None):
        self.data = data
        self.keras = data.get("keras")
        # Out of date: the class list and names come from Keras, and each class is described on demand.
        self._describe = describe
        self._described: dict[tuple[str, str], dict | None] = {}

    def class_names(self, kind: str) -> list[str]:
        return list(self.data["classes"][kind])

    def names(self, registry: str) -> list[str]:
        """The strings Keras resolves for a registry: activations, losses, metrics, dtypes, ..."""
        return self.data["names"][registry]

    def entry(self, kind: str, name: str) -> dict | None:
        """Class `name`: {"doc", "arguments"}, or None when the index has no such class."""
        entry = self.data["classes"][kind].get(name)
        if entry is not None or self._describe is None:
            return entry
        if (kind, name) not in self._described:
            self._described[(kind, name)] = self._describe(kind, name)
        return self._described[(kind, name)]

    def arguments(self, kind: str, name: str) -> list[dict]:
        """The described arguments of class `name` (none for a class the index does not have)."""
        entry = self.entry(kind, name)
        return entry["arguments"] if entry else []


def read_index(path: Path = INDEX_FILE) -> KerasIndex:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return KerasIndex(json.load(handle))


def is_current(index: KerasIndex) -> bool:
    """Made by this mlcli for the installed Keras."""
    return index.data.get("format") == FORMAT and index.keras == installed_keras()


def stale_note(index: KerasIndex) -> str:
    """The first half of what mlcli says when the index is not the installed Keras's."""
    return (f"note: mlcli's Keras index is out of date: it was made for Keras {index.keras} but Keras "
            f"{installed_keras()} is installed (`make keras-index` updates it)")
