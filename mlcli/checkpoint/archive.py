"""A checkpoint named on the command line (CONTRACT §1: CKPT is a run directory or a .keras file).

Read without TensorFlow: a .keras file is a zip whose config.json describes the architecture, so the
layer names and types are known (and config errors reported) before anything heavy is imported.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcli.config.keras_checks import keras_index
from mlcli.data.sources import sha256
from mlcli.errors import UsageError
from mlcli.model.build import NORMALIZE_LAYER  # mlcli.model imports TensorFlow only inside functions
from mlcli.run import rundir

_unsafe = False  # --unsafe: the user trusts the file enough to let Keras run code stored in it


def allow_unsafe(flag: bool) -> None:
    global _unsafe
    _unsafe = flag


def load_keras(path: Path, *, compile: bool, what: str = "CKPT"):
    """keras.saving.load_model in Keras's safe mode (unless --unsafe); every failure is exit 2.

    Safe mode refuses Python code stored in a model (a Lambda layer's function, custom objects), so
    loading a file from elsewhere never runs it unless the user says they trust it.
    """
    import keras

    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=not _unsafe)
    except Exception as exc:  # noqa: BLE001 — a user's file can fail in any of Keras's ways
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        if "safe_mode" in text or "arbitrary code" in text:
            raise UsageError(
                f"{what} {path}: holds Python code (e.g. a Lambda layer), which mlcli does not run from a "
                "model file by default (Keras safe mode)",
                hint="pass --unsafe only if you trust where the file came from",
            ) from None
        raise UsageError(f"{what} {path}: cannot be loaded as a Keras model: {first}",
                         hint="pass a run directory or a .keras file saved by Keras 3") from None


# Keras arguments that describe how a layer was stored rather than what it is.
_STORAGE_KEYS = {"trainable", "dtype", "name"}


@dataclass(frozen=True)
class ArchiveLayer:
    """One declared layer as config.json records it."""

    name: str
    type: str
    config: dict


@dataclass(frozen=True)
class Checkpoint:
    path: Path  # the .keras file itself
    run_dir: Path | None  # the run directory it belongs to, when there is one
    config_path: Path | None  # that run's config.yaml
    architecture: dict  # the archive's config.json

    @property
    def layers(self) -> list[ArchiveLayer]:
        """The layers as the user declared them: no input layer, no mlcli normalization."""
        out = []
        for item in self.architecture.get("config", {}).get("layers", []):
            config = item.get("config", {})
            if item.get("class_name") == "InputLayer" or config.get("name") == NORMALIZE_LAYER:
                continue
            out.append(ArchiveLayer(str(config.get("name")), str(item.get("class_name")), config))
        return out

    @property
    def from_finetune(self) -> bool:
        """Whether the checkpoint's run was itself a finetune run (its run.json names a parent)."""
        if self.run_dir is None or not (self.run_dir / rundir.RUN).is_file():
            return False
        try:
            return bool(rundir.read_json(self.run_dir / rundir.RUN).get("parent"))
        except (OSError, ValueError, AttributeError):
            return False

    @property
    def has_normalization(self) -> bool:
        return any(item.get("config", {}).get("name") == NORMALIZE_LAYER
                   for item in self.architecture.get("config", {}).get("layers", []))

    def facts(self) -> dict:
        """What run.json records about the parent."""
        return {
            "path": str(self.path),
            "sha256": sha256(self.path),
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "config": str(self.config_path) if self.config_path else None,
        }



def locate(path: Path, flag: str) -> tuple[Path, Path | None]:
    """CKPT (CONTRACT §1) -> (the .keras file, the run directory around it or None). Exit 2 otherwise.

    A run directory means its model.keras; a .keras file inside a run (DIR/best.keras,
    DIR/state/...) belongs to that run, whose files describe it.
    """
    if not path.exists():
        raise UsageError(f"{flag} {path}: not found — expected a run directory or a .keras file")
    if path.is_dir():
        if not rundir.is_run(path):
            raise UsageError(f"{flag} {path}: is not an mlcli run directory (no {rundir.RUN} or {rundir.CONFIG})",
                             hint="pass a directory written by `mlcli train`, or a .keras file")
        model = path / rundir.MODEL
        if not model.is_file():
            hint = f"finish it with `mlcli train --resume {path}`"
            if (path / rundir.BEST).is_file():
                hint += f", or use its best checkpoint: {path / rundir.BEST}"
            raise UsageError(f"{flag} {path}: the run has no {rundir.MODEL} yet (status: {_status(path)})", hint=hint)
        return model.resolve(), path.resolve()
    if path.suffix.lower() != ".keras":
        kind = path.suffix or "file without extension"
        raise UsageError(f"{flag} {path}: expected a run directory or a .keras file, not a {kind}")
    parent = path.resolve().parent
    for candidate in (parent, parent.parent if parent.name == rundir.STATE else None):
        if candidate is not None and (candidate / rundir.CONFIG).is_file():
            return path.resolve(), candidate
    return path.resolve(), None


def read_archive_config(path: Path, flag: str) -> dict:
    """config.json of a .keras archive (read without TensorFlow), or exit 2 saying what is wrong."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names or "model.weights.h5" not in names:
                raise zipfile.BadZipFile("no config.json / model.weights.h5 inside")
            architecture = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"{flag} {path}: is not a complete Keras archive ({reason}) — the file is truncated, "
            "still being written, or not a .keras model",
            hint="pass a run directory or a .keras file saved by Keras (model.save('x.keras'))",
        ) from None
    if not isinstance(architecture, dict):
        raise UsageError(f"{flag} {path}: its config.json is not a Keras model description")
    return architecture


def read_archive_facts(path: Path) -> dict | None:
    """The mlcli.json that mlcli writes into its .keras files (rundir.save_model), when it is there and
    well formed; None for a model saved by Keras alone (or one whose member was tampered with)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if rundir.ARCHIVE_FACTS not in archive.namelist():
                return None
            facts = json.loads(archive.read(rundir.ARCHIVE_FACTS))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None
    if not isinstance(facts, dict) or facts.get("task") not in ("classification", "regression"):
        return None
    features, labels, classes = facts.get("features"), facts.get("labels"), facts.get("classes")
    if not (isinstance(labels, list) and labels and all(isinstance(n, str) for n in labels)):
        return None
    if features is not None and not (isinstance(features, list) and all(isinstance(n, str) for n in features)):
        return None
    if (facts["task"] == "classification") != isinstance(classes, list) or (classes is not None and not classes):
        return None
    return facts


def resolve(ckpt: Path, flag: str) -> Checkpoint:
    """A checkpoint to fine-tune: located, its archive read, and a Sequential model."""
    model, run_dir = locate(ckpt, flag)
    architecture = read_archive_config(model, flag)
    if architecture.get("class_name") != "Sequential":
        raise UsageError(
            f"{flag} {model}: holds a {architecture.get('class_name')} model — mlcli fine-tunes Sequential models "
            "(what `mlcli train` writes), whose layers can be counted, frozen and replaced in order",
        )
    config_path = run_dir / rundir.CONFIG if run_dir is not None and (run_dir / rundir.CONFIG).is_file() else None
    return Checkpoint(model, run_dir, config_path, architecture)


def _status(run_dir: Path) -> str:
    try:
        return str(rundir.read_json(run_dir / rundir.RUN).get("status", "unknown"))
    except (OSError, ValueError, AttributeError):
        return "unknown"


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
