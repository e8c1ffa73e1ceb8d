"""A .keras archive, read without TensorFlow, and written with what mlcli knows about the model.

A .keras file is a zip whose config.json describes the architecture, so the layer names and types
are known (and config errors reported) before anything heavy is imported. mlcli adds one member,
mlcli.json (ARCHIVE_FACTS), which Keras's loader ignores: the input columns, labels and classes, so
a model copied out of its run still predicts by column name and in the original labels.

A .keras file may come from anyone, so nothing is read from it before the zip directory's declared
sizes pass (check_members): the JSON members under a small cap, no member inflating beyond a sane
ratio, the weights within the memory there is. Keras's loader is only reached for such archives.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcli import limits
from mlcli.config.keras_checks import keras_index
from mlcli.errors import DataError, UsageError, first_line
from mlcli.model.backbone_spec import BACKBONE
from mlcli.model.features import BODY  # mlcli.model imports TensorFlow only inside functions
from mlcli.model.label_transform import plain_compile_config
from mlcli.model.normalize import NORMALIZE_LAYER
from mlcli.run.files import replacing
from mlcli.run.manifest import typed_features

ARCHIVE_FACTS = "mlcli.json"  # inside a .keras archive: what the model's inputs and outputs mean
CONFIG = "config.json"
JSON_MEMBERS = (CONFIG, "metadata.json", ARCHIVE_FACTS)  # read whole, by mlcli or by Keras
WEIGHTS_MEMBERS = ("model.weights.h5", "model.weights.npz")  # Keras reads one whole into memory

# Keras arguments that describe how a layer was stored rather than what it is.
_STORAGE_KEYS = {"trainable", "dtype", "name"}


# ---- reading --------------------------------------------------------------------------------------

def read_archive_config(path: Path, flag: str) -> dict:
    """config.json of a .keras archive (read without TensorFlow), or exit 2 saying what is wrong
    (exit 3 for an archive whose declared sizes do not pass check_members)."""
    try:
        with open_archive(path, flag) as archive:
            names = set(archive.namelist())
            if CONFIG not in names or WEIGHTS_MEMBERS[0] not in names:
                raise zipfile.BadZipFile("no config.json / model.weights.h5 inside")
            architecture = json.loads(archive.read(CONFIG))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise UsageError(
            f"{flag} {path}: is not a complete Keras archive ({first_line(exc)}) — the file is truncated, "
            "still being written, or not a .keras model",
            hint="pass a run directory or a .keras file saved by Keras (model.save('x.keras'))",
        ) from None
    if not isinstance(architecture, dict):
        raise UsageError(f"{flag} {path}: its config.json is not a Keras model description")
    return architecture


def read_archive_facts(path: Path, flag: str = "CKPT") -> dict | None:
    """The mlcli.json that mlcli writes into its .keras files (save_model), when it is there and
    well formed; None for a model saved by Keras alone (or one whose member was tampered with)."""
    try:
        with open_archive(path, flag) as archive:
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


# ---- declared sizes, checked before anything is read -------------------------------------------------

@contextlib.contextmanager
def open_archive(path: Path, flag: str):
    """The archive open, its members' declared sizes checked (check_members) before anything is read.

    Python's zipfile never returns more than a member's declared size (a longer member fails its
    CRC), so once the declared sizes pass, reading a member cannot take more than they say."""
    with zipfile.ZipFile(path) as archive:
        check_members(archive, path, flag)
        yield archive


def check_archive(path: Path, flag: str) -> None:
    """check_members on the archive at `path`; a file that is not a zip is left to Keras to report."""
    with contextlib.suppress(zipfile.BadZipFile, OSError, EOFError), open_archive(path, flag):
        pass


def check_members(archive: zipfile.ZipFile, path: Path, flag: str) -> None:
    """Exit 3 naming the member and its declared size when the zip directory declares a bomb: a JSON
    member over its cap, a member (or all of them together) inflating beyond the compression ratio,
    or weights that would not fit in memory. Nothing is decompressed."""
    json_cap = limits.archive_json_limit()
    infos = archive.infolist()
    for info in infos:
        if info.filename in JSON_MEMBERS and info.file_size > json_cap:
            raise DataError(
                f"{flag} {path}: its member {info.filename} declares {limits.size_text(info.file_size)} — more than "
                f"the {limits.size_text(json_cap)} a model archive's JSON member may hold (Keras and mlcli write "
                "a few KB there): a decompression bomb, not a model file",
                hint=f"if you trust the file, raise the limit: {limits.ARCHIVE_JSON_VAR}={_round_up(info.file_size)}",
            )
        _check_ratio(f"its member {info.filename} declares", info.file_size, info.compress_size, path, flag)
    _check_ratio(f"its {len(infos)} members declare together", sum(i.file_size for i in infos),
                 sum(i.compress_size for i in infos), path, flag)
    for info in infos:
        if info.filename in WEIGHTS_MEMBERS:  # read into memory whole, then copied into the model's variables
            limits.fits(limits.Declared(info.file_size, 2 * info.file_size),
                        f"{flag} {path}: its member {info.filename}",
                        hint=f"if the machine has the memory, set {limits.MEMORY_LIMIT_VAR} to what mlcli may use")


def _check_ratio(what: str, size: int, stored: int, path: Path, flag: str) -> None:
    """`what`: the member(s) and the verb, as the message says them ("its member x declares")."""
    ratio_cap = limits.compression_ratio_limit()
    if size <= limits.RATIO_FLOOR_BYTES or size <= ratio_cap * max(stored, 1):
        return
    ratio = size / max(stored, 1)
    raise DataError(
        f"{flag} {path}: {what} {limits.size_text(size)} stored in "
        f"{limits.size_text(stored)} ({ratio:,.0f} times smaller) — more than the {ratio_cap:,.0f} times a model "
        "archive may inflate (Keras stores its members uncompressed): a decompression bomb, not a model file",
        hint=f"if you trust the file, raise the limit: {limits.RATIO_VAR}={int(ratio) + 1}",
    )


def _round_up(size: int) -> str:
    """A size for an environment variable, rounded up to whole MiB: 1_000_000_001 -> '954M'."""
    return f"{-(-size // (1 << 20))}M"


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
        if item.get("class_name") == "InputLayer" or config.get("name") in (NORMALIZE_LAYER, BACKBONE):
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
        # Only what the constructor takes: a stored config may hold more (LayerNormalization's rms_scaling).
        accepted = {a["name"] for a in keras_index().arguments("layers", layer.type)}
        for key, value in layer.config.items():
            if key in _STORAGE_KEYS or value is None or (accepted and key not in accepted):
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
    facts = {"task": prepared.task, "features": prepared.feature_facts(), "labels": prepared.label_names,
             "classes": prepared.classes}
    if getattr(prepared, "inputs", None) is not None:  # image data (docs/contract.md §7)
        facts["inputs"] = prepared.inputs
    return facts


def save_model(model, path: Path, facts: dict | None = None) -> None:
    """model.save to a temporary .keras name in the same directory, then rename over `path`.

    `facts` go into the archive as one more member, mlcli.json (see the module docstring)."""
    with replacing(path, suffix=".keras") as tmp:
        with plain_compile_config(model):  # plain Keras must load it: no mlcli loss in the file
            model.save(tmp)
        if facts is not None:
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(ARCHIVE_FACTS, json.dumps(facts, default=str))
