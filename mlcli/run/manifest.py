"""run.json: what a run records about itself, and what a finished or resumed run reports."""

from __future__ import annotations

import datetime as dt
import platform
from pathlib import Path

from mlcli import __version__
from mlcli.config import LoadedConfig, config_hash, differences, to_dict
from mlcli.errors import ConfigError
from mlcli.run import rundir


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {"mlcli": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version()}


def check_resume_config(run_dir: Path, loaded: LoadedConfig) -> None:
    """--resume with a config that differs from the run's is exit 2 with the key-by-key difference."""
    saved = rundir.read_json(run_dir / rundir.RUN).get("config_hash")
    if saved == config_hash(loaded.config):
        return
    from mlcli.config.yamlio import read_yaml_file

    old, _ = read_yaml_file(run_dir / rundir.CONFIG)
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
    from mlcli.model.build import layer_table, parameter_counts

    config = request.loaded.config
    previous = {}
    if request.resume and (request.run_dir / rundir.RUN).is_file():
        previous = rundir.read_json(request.run_dir / rundir.RUN)
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
        "features": prepared.feature_names,
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


def check_same_data(run_dir: Path, prepared) -> None:
    """A resumed run must read the data it started with: the model's normalization was fitted on it."""
    from mlcli.errors import DataError

    recorded = rundir.read_json(run_dir / rundir.RUN).get("data", {}) if (run_dir / rundir.RUN).is_file() else {}
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
