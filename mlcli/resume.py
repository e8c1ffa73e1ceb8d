"""What --resume needs, saved so that a resumed run is bit-identical to an uninterrupted one.

A resume point is (epoch, step): the number of finished epochs and the steps already taken in the
next one. It holds the model with its optimizer state (Keras .keras file), and an .npz with what
Keras does not save: the random-generator states of layers such as Dropout, the running metric
totals of a half-finished epoch, and EarlyStopping's best weights. `progress.json` is written last
and names the files it belongs to, so a kill at any moment leaves the previous point intact.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from mlcli import runs


def _seed_variables(model) -> list:
    # Keras saves layer weights and optimizer slots, but not SeedGenerator states (Dropout, noise layers).
    return [v for v in model.variables if "seed_generator_state" in v.path]


def save_point(model, run_dir: Path, progress: dict, *, partial_metrics: bool,
               early_stopping_weights: list | None) -> None:
    """Save the resume point described by `progress` ({"epochs_completed", "step", ...})."""
    state = run_dir / runs.STATE
    tag = f"epoch{progress['epochs_completed']:05d}-step{progress.get('step', 0):07d}"
    checkpoint = state / f"{tag}.keras"
    runs.save_model(model, checkpoint)
    arrays: dict[str, np.ndarray] = {}
    for index, variable in enumerate(_seed_variables(model)):
        arrays[f"seed_{index}"] = np.asarray(variable.numpy())
    if partial_metrics:
        for index, variable in enumerate(model.metrics_variables):
            arrays[f"metric_{index}"] = np.asarray(variable.numpy())
    if early_stopping_weights is not None:
        for index, weight in enumerate(early_stopping_weights):
            arrays[f"best_{index}"] = np.asarray(weight)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    extras = state / f"{tag}.npz"
    runs.write_atomic(extras, buffer.getvalue())
    runs.fault_point("state-before-progress")
    runs.write_json(state / runs.STATE_PROGRESS, {**progress, "checkpoint": checkpoint.name, "extras": extras.name})
    keep = {checkpoint.name, extras.name, runs.STATE_PROGRESS}
    for stale in state.iterdir():
        if stale.name not in keep and not stale.name.startswith("."):
            stale.unlink(missing_ok=True)


def read_progress(run_dir: Path) -> dict | None:
    """The last complete resume point, or None when the run never reached one."""
    path = run_dir / runs.STATE / runs.STATE_PROGRESS
    if not path.is_file():
        return None
    progress = runs.read_json(path)
    if not (run_dir / runs.STATE / progress.get("checkpoint", "")).is_file():
        return None
    return progress


def load_point(run_dir: Path, progress: dict):
    """(compiled model with optimizer state, extras dict) of a resume point."""
    from mlcli.checkpoints import load_keras

    state = run_dir / runs.STATE
    model = load_keras(state / progress["checkpoint"], compile=True, what="resume state")
    with np.load(state / progress["extras"], allow_pickle=False) as archive:
        extras = {name: archive[name] for name in archive.files}
    for index, variable in enumerate(_seed_variables(model)):
        if f"seed_{index}" in extras:
            variable.assign(extras[f"seed_{index}"])
    return model, extras


def restore_partial_metrics(model, extras: dict) -> None:
    """Put back the running totals of a half-finished epoch (call after Keras resets metrics)."""
    for index, variable in enumerate(model.metrics_variables):
        key = f"metric_{index}"
        if key in extras:
            variable.assign(extras[key])


def early_stopping_weights(extras: dict) -> list | None:
    keys = sorted((k for k in extras if k.startswith("best_")), key=lambda k: int(k.split("_")[1]))
    return [extras[k] for k in keys] or None


def describe(progress: dict | None) -> str:
    if not progress:
        return "no saved state (starting from the beginning)"
    step = progress.get("step", 0)
    where = f"epoch {progress['epochs_completed']} finished" if not step else (
        f"{progress['epochs_completed']} epoch(s) and {step} step(s) of the next")
    return f"resuming after {where}"
