"""A .keras archive, read without TensorFlow, and written with what mlcli knows about the model.

A .keras file is a zip whose config.json describes the architecture, so the layer names and types
are known (and config errors reported) before anything heavy is imported. mlcli adds one member,
mlcli.json (ARCHIVE_FACTS), which Keras's loader ignores: the input columns, labels and classes, so
a model copied out of its run still predicts by column name and in the original labels.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcli.errors import UsageError, first_line
from mlcli.model.features import BODY  # mlcli.model imports TensorFlow only inside functions
from mlcli.model.normalize import NORMALIZE_LAYER
from mlcli.run.files import replacing
from mlcli.run.manifest import typed_features

ARCHIVE_FACTS = "mlcli.json"  # inside a .keras archive: what the model's inputs and outputs mean

# Keras arguments that describe how a layer was stored rather than what it is.
_STORAGE_KEYS = {"trainable", "dtype", "name"}


# ---- reading --------------------------------------------------------------------------------------

def read_archive_config(path: Path, flag: str) -> dict:
    """config.json of a .keras archive (read without TensorFlow), or exit 2 saying what is wrong."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names or "model.weights.h5" not in names:
                raise zipfile.BadZipFile("no config.json / model.weights.h5 inside")
            architecture = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise UsageError(
            f"{flag} {path}: is not a complete Keras archive ({first_line(exc)}) — the file is truncated, "
            "still being written, or not a .keras model",
            hint="pass a run directory or a .keras file saved by Keras (model.save('x.keras'))",
        ) from None
    if not isinstance(architecture, dict):
        raise UsageError(f"{flag} {path}: its config.json is not a Keras model description")
    return architecture


def read_archive_facts(path: Path) -> dict | None:
    """The mlcli.json that mlcli writes into its .keras files (save_model), when it is there and
    well formed; None for a model saved by Keras alone (or one whose member was tampered with)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if ARCHIVE_FACTS not in archive.namelist():
                return None
            facts = json.loads(archive.read(ARCHIVE_FACTS))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None
    if not isinstance(facts, dict) or facts.get("task") not in ("classification", "regression"):
        return None
    features, labels, classes = facts.get("features"), facts.get("labels"), facts.get("classes")
    if not (isinstance(labels, list) and labels and all(isinstance(n, str) for n in labels)):
        return None
    if features is not None and not (isinstance(features, list) and (
            all(isinstance(n, str) for n in features) or typed_features(features) is not None)):
        return None
    if (facts["task"] == "classification") != isinstance(classes, list) or (classes is not None and not classes):
        return None
    return facts


@dataclass(frozen=True)
class ArchiveLayer:
    """One declared layer as config.json records it."""

    name: str
    type: str
    config: dict


def declared_layers(architecture: dict) -> list[ArchiveLayer]:
    """The layers as the user declared them: no input layer, no mlcli normalization; for a typed
    model, the layers of its body (its input block is mlcli's)."""
    out = []
    body = typed_body(architecture)
    layers = body if body is not None else architecture.get("config", {}).get("layers", [])
    for item in layers:
        config = item.get("config", {})
        if item.get("class_name") == "InputLayer" or config.get("name") == NORMALIZE_LAYER:
            continue
        out.append(ArchiveLayer(str(config.get("name")), str(item.get("class_name")), config))
    return out


def typed_body(architecture: dict) -> list | None:
    """The body's layer records of a typed model (mlcli.model.features); None for a plain Sequential."""
    for item in architecture.get("config", {}).get("layers", []):
        config = item.get("config") or {}
        if config.get("name") == BODY and isinstance(config.get("layers"), list):
            return config["layers"]
    return None


def has_normalization(architecture: dict) -> bool:
    return any(item.get("config", {}).get("name") == NORMALIZE_LAYER
               for item in architecture.get("config", {}).get("layers", []))


def input_shape(architecture: dict) -> tuple[int, ...] | None:
    """The per-row input shape Keras recorded (build_config), or None when it is not plain."""
    shape = (architecture.get("build_config") or {}).get("input_shape")
    if isinstance(shape, list) and len(shape) >= 2 and all(isinstance(d, int) and d > 0 for d in shape[1:]):
        return tuple(shape[1:])
    return None


def last_activation(architecture: dict) -> str | None:
    layers = ((architecture.get("config") or {}).get("layers")) or []
    for layer in reversed(layers):
        activation = (layer.get("config") or {}).get("activation")
        if activation:
            return activation if isinstance(activation, str) else None
    return None


def describe_layers(layers: list[ArchiveLayer]) -> list[dict[str, Any]]:
    """model.layers entries for a checkpoint that carries no config.yaml: each layer's type, its name,
    and its plain-valued Keras arguments as stored. Nested objects (initializers, regularizers,
    dtype policies) are left out: they only matter when building from scratch, and the weights come
    from the checkpoint."""
    out = []
    for layer in layers:
        spec: dict[str, Any] = {"type": layer.type, "name": layer.name}
        for key, value in layer.config.items():
            if key in _STORAGE_KEYS or value is None:
                continue
            if _plain(value):
                spec[key] = value
        out.append(spec)
    return out


def _plain(value: Any) -> bool:
    if isinstance(value, (str, int, float, bool)):
        return True
    return isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value)


# ---- writing ------------------------------------------------------------------------------------

def model_facts(prepared) -> dict:
    """What a .keras file needs to be used away from its run directory: the input columns in model
    order (typed features: each one's record, as run.json has them), the label column(s) and the
    class vocabulary in output order."""
    return {"task": prepared.task, "features": prepared.feature_facts(), "labels": prepared.label_names,
            "classes": prepared.classes}


def save_model(model, path: Path, facts: dict | None = None) -> None:
    """model.save to a temporary .keras name in the same directory, then rename over `path`.

    `facts` go into the archive as one more member, mlcli.json (see the module docstring)."""
    with replacing(path, suffix=".keras") as tmp:
        model.save(tmp)
        if facts is not None:
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(ARCHIVE_FACTS, json.dumps(facts, default=str))
