"""run.json: what a run records about itself, and what a finished or resumed run reports.

This module is the only one that reads or writes run.json: everyone else asks it.
"""

from __future__ import annotations

import datetime as dt
import platform
from pathlib import Path

from mlcli import __version__
from mlcli.config import LoadedConfig, config_hash, differences, to_dict
from mlcli.config.yamlio import read_yaml_file
from mlcli.errors import ConfigError, DataError, MlcliError, UsageError, first_line
from mlcli.model.table import layer_table, parameter_counts
from mlcli.run.files import CONFIG, RUN, read_json, write_json


def has_manifest(run_dir: Path) -> bool:
    return (run_dir / RUN).is_file()


def read_manifest(run_dir: Path) -> dict:
    """run.json as a dict; {} when the run has not written one yet. A run.json that cannot be read,
    or holds something other than a JSON object, is exit 2: the run directory is damaged."""
    path = run_dir / RUN
    if not path.is_file():
        return {}
    try:
        manifest = read_json(path)
    except (ValueError, OSError) as exc:
        raise UsageError(f"{path}: cannot be read ({first_line(exc)}) — the run directory is damaged") from None
    if not isinstance(manifest, dict):
        raise UsageError(f"{path}: cannot be read (not a JSON object) — the run directory is damaged")
    return manifest


def write_manifest(run_dir: Path, manifest: dict) -> None:
    write_json(run_dir / RUN, manifest)


def record_failure(run_dir: Path, manifest: dict, error: BaseException, epochs_completed: int) -> bool:
    """Mark the run `failed`, with the error that ended it ({"error", "exit_code", "message"}, as the
    --json error document has them). Returns False when run.json cannot be written either (the disk
    that failed the run is still full): it then keeps its last complete version."""
    if isinstance(error, MlcliError):
        failure = {"error": error.kind, "exit_code": error.exit_code, "message": error.message}
    else:  # a bug: the traceback is on stderr, its last line is here
        failure = {"error": "internal error", "exit_code": 1, "message": f"{type(error).__name__}: {first_line(error)}"}
    manifest.update(status="failed", ended_at=now(), epochs_completed=epochs_completed, failure=failure)
    try:
        write_manifest(run_dir, manifest)
    except MlcliError:
        return False
    return True


def run_status(run_dir: Path) -> str:
    """The status run.json records, for a message about a run that is being refused anyway: a
    damaged or missing run.json is "unknown" here rather than a second error."""
    try:
        return str(read_manifest(run_dir).get("status", "unknown"))
    except UsageError:
        return "unknown"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    import keras  # deferred: imports TensorFlow
    import tensorflow as tf  # deferred: imports TensorFlow

    return {"mlcli": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version()}


def check_resume_config(run_dir: Path, loaded: LoadedConfig) -> None:
    """--resume with a config that differs from the run's is exit 2 with the key-by-key difference."""
    saved = read_manifest(run_dir).get("config_hash")
    if saved == config_hash(loaded.config):
        return

    old, _ = read_yaml_file(run_dir / CONFIG)
    lines = differences(old, to_dict(loaded.config)) or ["(the configs differ)"]
    raise ConfigError(
        f"{run_dir} was started with a different config; --resume needs the same one:\n    "
        + "\n    ".join(lines),
        hint="rerun with the original config, or write to another --output",
    )


def start_manifest(request, prepared, device: str, precision: str, model, started: str,
                    finetune_facts: dict | None, progress: dict | None = None) -> dict:
    """run.json as a run starts; a resumed run keeps its history of resumes and adds this one, with the
    saved point it continues from (`progress`, None when none had been saved)."""

    config = request.loaded.config
    previous = read_manifest(request.run_dir) if request.resume else {}
    manifest = {
        "status": "running",
        "command": list(request.command),
        "config_hash": config_hash(config),
        "versions": versions(),
        "device": device,
        "precision": precision,
        "seed": config.seed,
        "deterministic": config.runtime.deterministic,
        "data": prepared.files,
        "task": prepared.task,
        "features": prepared.feature_facts(),
        "inputs": getattr(prepared, "inputs", None),  # image data: {kind: image, size, channels, ...}
        "labels": prepared.label_names,
        "classes": prepared.classes,
        "rows": {name: getattr(prepared, name).rows for name in ("train", "validation", "test")
                 if getattr(prepared, name) is not None},
        "parameters": parameter_counts(model),
        "layers": layer_table(model),
        "parent": request.parent,
        "started_at": previous.get("started_at", started),
        "resumed_at": ([*previous.get("resumed_at", []), started] if previous else []),
        # where each resume started, so that a resume is told from a restart from outside the process
        "resumed_from": ([*previous.get("resumed_from", []), _resume_point(progress)] if previous else []),
        "ended_at": None,
        "epochs_completed": previous.get("epochs_completed", 0),
    }
    if finetune_facts is not None:
        manifest["finetune"] = {k: v for k, v in finetune_facts.items() if k != "notes"}
    elif previous.get("finetune"):
        manifest["finetune"] = previous["finetune"]
    return manifest


def _resume_point(progress: dict | None) -> dict:
    if progress is None:
        return {"epochs_completed": 0, "step": 0}
    return {"epochs_completed": int(progress["epochs_completed"]), "step": int(progress.get("step", 0))}


def feature_names(features: list | None) -> list[str] | None:
    """run.json's `features` as column names: names already, or typed features' records (mappings
    with a name each)."""
    if features is None:
        return None
    return [f["name"] if isinstance(f, dict) else f for f in features]


def typed_features(features: list | None) -> list[dict] | None:
    """run.json's `features` records when the run has typed features; None for plain column names."""
    if isinstance(features, list) and features and all(isinstance(f, dict) and "name" in f for f in features):
        return features
    return None


def check_same_data(run_dir: Path, prepared) -> None:
    """A resumed run must read the data it started with: the model's normalization was fitted on it."""
    recorded = read_manifest(run_dir).get("data", {})
    for role, parts in prepared.files.items():
        before = {f["path"]: f.get("sha256") for part in recorded.get(role, []) for f in part.get("files", [])}
        for part in parts:
            for facts in part.get("files", []):
                if facts["path"] in before and before[facts["path"]] != facts.get("sha256"):
                    raise DataError(
                        f"data.{role}: {facts['path']} changed since this run started (its sha256 differs); "
                        "continuing would train on other data than the saved state was trained on",
                        hint="restore the file, or start a new run (--force or another --output)",
                    )
