"""Compile + fit + save. `train` and `finetune` share this; finetune only prepares the model.

Order matters for "nothing lost": config and data are checked, and the model is built, before the
run directory is touched; every file is written atomically; the resume state is written last at
each epoch end.
"""

from __future__ import annotations

import datetime as dt
import math
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mlcli import __version__, console, runs
from mlcli.config import LoadedConfig, config_hash, differences, to_dict
from mlcli.config.yamlio import dump_yaml
from mlcli.errors import ConfigError, Diverged, Interrupted, UsageError


@dataclass
class TrainRequest:
    loaded: LoadedConfig
    run_dir: Path
    command: list[str]
    resume: bool = False  # continue the unfinished run in run_dir
    # finetune: builds the model from the parent; returns (model, facts for run.json)
    make_model: Callable[[LoadedConfig, Any], tuple[Any, dict]] | None = None
    parent: dict | None = None


@dataclass
class TrainResult:
    run_dir: Path
    status: str
    epochs_completed: int
    metrics: dict[str, float]
    best: dict | None
    device: str
    precision: str
    parameters: dict[str, int] = field(default_factory=dict)
    layers: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    finetune: dict | None = None

    def document(self) -> dict:
        """The --json document of CONTRACT §1 (plus the parameter counts and layer table)."""
        doc = {
            "run_dir": str(self.run_dir),
            "status": self.status,
            "epochs_completed": self.epochs_completed,
            "metrics": self.metrics,
            "best": self.best,
            "device": self.device,
            "precision": self.precision,
            "parameters": self.parameters,
            "layers": self.layers,
        }
        if self.finetune is not None:
            doc["finetune"] = self.finetune
        return doc


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {"mlcli": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version()}


def finished_result(run_dir: Path) -> TrainResult:
    """What a completed run reports when asked to resume (nothing to do)."""
    manifest = runs.read_json(run_dir / runs.RUN)
    metrics = runs.read_json(run_dir / runs.METRICS) if (run_dir / runs.METRICS).is_file() else {}
    return TrainResult(
        run_dir=run_dir, status=manifest.get("status", "completed"),
        epochs_completed=int(manifest.get("epochs_completed", 0)), metrics=metrics,
        best=manifest.get("best"), device=manifest.get("device", "unknown"),
        precision=manifest.get("precision", "unknown"), parameters=manifest.get("parameters", {}),
        layers=manifest.get("layers", []), notes=["the run had already finished: nothing to do"],
        finetune=manifest.get("finetune"),
    )


def check_resume_config(run_dir: Path, loaded: LoadedConfig) -> None:
    """--resume with a config that differs from the run's is exit 2 with the key-by-key difference."""
    saved = runs.read_json(run_dir / runs.RUN).get("config_hash")
    if saved == config_hash(loaded.config):
        return
    from mlcli.config.yamlio import read_yaml_file

    old, _ = read_yaml_file(run_dir / runs.CONFIG)
    lines = differences(old, to_dict(loaded.config)) or ["(the configs differ)"]
    raise ConfigError(
        f"{run_dir} was started with a different config; --resume needs the same one:\n    "
        + "\n    ".join(lines),
        hint="rerun with the original config, or write to another --output",
    )


def run_training(request: TrainRequest) -> TrainResult:
    from mlcli import runtime

    tf = runtime.import_tensorflow()
    import keras

    from mlcli import callbacks as cb
    from mlcli.data.pipeline import evaluation_dataset, training_dataset
    from mlcli.data.prepare import label_encoding, prepare
    from mlcli.model import build_loss, build_metrics, build_model, build_optimizer, layer_table, parameter_counts

    loaded = request.loaded
    config = loaded.config
    run_dir = request.run_dir

    device = runtime.select_device(config.runtime.device)
    precision = runtime.choose_precision(config.runtime.precision, device)
    keras.mixed_precision.set_global_policy("float32" if precision == "float32" else precision)
    runtime.seed_everything(config.seed, config.runtime.deterministic)

    # Every Keras name is resolved before any data is read: a typo costs no time.
    build_optimizer(loaded), build_loss(loaded), build_metrics(loaded)
    prepared = prepare(config)
    progress = _read_progress(run_dir) if request.resume else None

    notes: list[str] = []
    finetune_facts = None
    if progress is not None:
        model = _load_state_model(run_dir)
    elif request.make_model is not None:
        model, finetune_facts = request.make_model(loaded, prepared)
        notes.extend(finetune_facts.get("notes", []))
    else:
        model = build_model(loaded, prepared.input_shape, prepared.train.x, output_float32=precision != "float32")

    outputs = int(model.output_shape[-1])
    encoding = label_encoding(config, prepared.task, outputs, len(prepared.classes or []))
    _check_output_width(loaded, prepared, encoding, outputs)
    if progress is None:
        model.compile(optimizer=build_optimizer(loaded), loss=build_loss(loaded), metrics=build_metrics(loaded))

    num_classes = len(prepared.classes or [])
    batch = config.training.batch_size
    first_epoch = int(progress["epochs_completed"]) if progress else 0
    epochs = config.training.epochs

    with runs.hold_lock(run_dir):
        history = runs.read_history(run_dir / runs.HISTORY)[:first_epoch] if progress else []
        started = _now()
        manifest = _start_manifest(request, prepared, device.describe(), precision, model, started, finetune_facts)
        if progress is None:
            runs.write_text(run_dir / runs.CONFIG, dump_yaml(to_dict(config)))
            if prepared.classes is not None:
                runs.write_json(run_dir / runs.LABELS, prepared.classes)
        runs.write_json(run_dir / runs.RUN, manifest)

        if first_epoch >= epochs or (progress or {}).get("stopped_early"):
            status = "completed"
            guard = cb.DivergenceGuard()
            interrupt = cb.InterruptGuard()
            best = progress.get("best") if progress else None
            early = None
        else:
            train_ds, steps = training_dataset(
                prepared.train, batch_size=batch, seed=config.seed, shuffle=config.data.shuffle,
                first_epoch=first_epoch, epochs=epochs, encoding=encoding, num_classes=num_classes,
            )
            val_ds = None
            if prepared.validation is not None:
                val_ds = evaluation_dataset(prepared.validation, batch_size=max(batch, 256), encoding=encoding,
                                            num_classes=num_classes)
            guard = cb.DivergenceGuard()
            interrupt = cb.InterruptGuard()
            early = None
            es_config = config.training.early_stopping
            if es_config is not None:
                early = cb.ResumableEarlyStopping(
                    restored=_early_stopping_state(run_dir, progress),
                    monitor=es_config.monitor, patience=es_config.patience,
                    restore_best_weights=es_config.restore_best_weights,
                    min_delta=es_config.min_delta, mode=es_config.mode,
                )
            monitor = config.training.checkpoint.monitor if prepared.validation is not None else None
            mode = config.training.checkpoint.mode

            def extra_state() -> dict:
                state: dict = {}
                if early is not None:
                    state["early_stopping"] = early.snapshot()
                    state["stopped_early"] = bool(early.model is not None and early.model.stop_training
                                                  and not guard.diverged and not interrupt.interrupted)
                    if early.best_weights is not None:
                        _save_weights(run_dir / runs.STATE / "early_stopping_best.npz", early.best_weights)
                return state

            epoch_end = cb.EpochEnd(
                run_dir, history=history, monitor=monitor, mode=mode,
                best=progress.get("best") if progress else None, guard=guard, interrupt=interrupt,
                extra_state=extra_state, steps=steps,
            )
            callbacks = [guard, interrupt]
            if early is not None:
                callbacks.append(early)
            callbacks += [
                epoch_end,
                keras.callbacks.TensorBoard(log_dir=str(run_dir / runs.LOGS), write_graph=False, profile_batch=0),
                cb.Progress(epochs, steps),
            ]
            interrupt.install()
            try:
                model.fit(
                    train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=first_epoch,
                    steps_per_epoch=steps, callbacks=callbacks, verbose=0, shuffle=False,
                )
            finally:
                interrupt.restore()
            best = epoch_end.best
            if guard.diverged:
                status = "diverged"
            elif interrupt.interrupted:
                status = "interrupted"
            else:
                status = "completed"

        completed_epochs = len(history)
        manifest["epochs_completed"] = completed_epochs
        manifest["best"] = best
        if status == "diverged":
            _keep_last_good(run_dir, model, manifest)
            manifest.update(status="diverged", diverged=guard.where, ended_at=_now())
            runs.write_json(run_dir / runs.RUN, manifest)
            where = guard.where
            raise Diverged(
                f"loss became {where['loss']} at epoch {where['epoch']}, step {where['step']}; "
                f"the last good state (epoch {completed_epochs}) is kept in {run_dir}",
                hint="lower optimizer.learning_rate, check the data for extreme values, or use normalize: standard",
            )
        if status == "interrupted":
            manifest.update(status="interrupted", interrupted={"signal": interrupt.signal_name,
                                                               "epochs_completed": completed_epochs},
                            ended_at=_now())
            runs.write_json(run_dir / runs.RUN, manifest)
            raise Interrupted(
                f"{interrupt.signal_name}: stopped after {completed_epochs} finished epoch(s); state saved in {run_dir}",
                hint=f"continue with: mlcli {'finetune' if request.parent else 'train'} --resume {run_dir}",
            )

        if progress is not None and first_epoch >= epochs or (progress or {}).get("stopped_early"):
            model = _load_state_model(run_dir)
            if early is None and config.training.early_stopping and config.training.early_stopping.restore_best_weights:
                weights = _load_weights(run_dir / runs.STATE / "early_stopping_best.npz")
                if weights is not None:
                    model.set_weights(weights)
        runs.save_model(model, run_dir / runs.MODEL)

        metrics = _final_metrics(history, config, early, progress)
        if prepared.test is not None:
            test_ds = evaluation_dataset(prepared.test, batch_size=max(batch, 256), encoding=encoding,
                                         num_classes=num_classes)
            scores = model.evaluate(test_ds, verbose=0, return_dict=True)
            metrics.update({f"test_{k}": float(v) for k, v in scores.items()})
        runs.write_json(run_dir / runs.METRICS, metrics)
        manifest.update(status="completed", ended_at=_now(), metrics=metrics)
        runs.write_json(run_dir / runs.RUN, manifest)

    return TrainResult(
        run_dir=run_dir, status="completed", epochs_completed=completed_epochs, metrics=metrics, best=best,
        device=device.describe(), precision=precision, parameters=manifest["parameters"],
        layers=manifest["layers"], notes=notes, finetune=finetune_facts and {k: v for k, v in finetune_facts.items() if k != "notes"},
    )


def _check_output_width(loaded: LoadedConfig, prepared, encoding: str, outputs: int) -> None:
    last = ("model", "layers", len(loaded.config.model.layers) - 1)
    if prepared.task == "classification":
        classes = len(prepared.classes)
        if encoding == "binary":
            if classes != 2:
                raise ConfigError(loaded.problem(
                    last, f"the last layer has 1 unit (binary) but the data has {classes} classes — "
                    f"use {classes} units with softmax and categorical_crossentropy",
                ))
            return
        if outputs != classes:
            raise ConfigError(loaded.problem(
                last, f"the last layer has {outputs} units but the data has {classes} classes "
                f"({', '.join(map(repr, prepared.classes[:12]))}{', …' if classes > 12 else ''}) — set its units to {classes}",
            ))
    elif outputs != len(prepared.label_names):
        raise ConfigError(loaded.problem(
            last, f"the last layer has {outputs} units but there are {len(prepared.label_names)} regression "
            f"target(s) ({', '.join(prepared.label_names)}) — set its units to {len(prepared.label_names)}",
        ))


def _start_manifest(request: TrainRequest, prepared, device: str, precision: str, model, started: str,
                    finetune_facts: dict | None) -> dict:
    from mlcli.model import layer_table, parameter_counts

    config = request.loaded.config
    previous = {}
    if request.resume and (request.run_dir / runs.RUN).is_file():
        previous = runs.read_json(request.run_dir / runs.RUN)
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
        "ended_at": None,
        "epochs_completed": previous.get("epochs_completed", 0),
    }
    if finetune_facts is not None:
        manifest["finetune"] = {k: v for k, v in finetune_facts.items() if k != "notes"}
    elif previous.get("finetune"):
        manifest["finetune"] = previous["finetune"]
    return manifest


def _read_progress(run_dir: Path) -> dict | None:
    path = run_dir / runs.STATE / runs.STATE_PROGRESS
    if not path.is_file() or not (run_dir / runs.STATE / runs.STATE_MODEL).is_file():
        return None
    return runs.read_json(path)


def _load_state_model(run_dir: Path):
    import keras

    return keras.saving.load_model(run_dir / runs.STATE / runs.STATE_MODEL, compile=True)


def _early_stopping_state(run_dir: Path, progress: dict | None) -> dict | None:
    if not progress or "early_stopping" not in progress:
        return None
    state = dict(progress["early_stopping"])
    weights = _load_weights(run_dir / runs.STATE / "early_stopping_best.npz")
    if weights is not None:
        state["best_weights"] = weights
    return state


def _save_weights(path: Path, weights: list) -> None:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, *weights)
    runs.write_atomic(path, buffer.getvalue())


def _load_weights(path: Path) -> list | None:
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as archive:
        return [archive[f"arr_{i}"] for i in range(len(archive.files))]


def _keep_last_good(run_dir: Path, model, manifest: dict) -> None:
    """After divergence, model.keras is the last finite state (the last finished epoch), if any."""
    state = run_dir / runs.STATE / runs.STATE_MODEL
    if state.is_file():
        import keras

        good = keras.saving.load_model(state, compile=True)
        runs.save_model(good, run_dir / runs.MODEL)


def _final_metrics(history: list[dict], config, early, progress) -> dict[str, float]:
    """Train/val metrics of the epoch whose weights model.keras holds."""
    if not history:
        return {}
    row = history[-1]
    es = config.training.early_stopping
    if es is not None and es.restore_best_weights:
        best_epoch = None
        if early is not None and early.best_weights is not None:
            best_epoch = early.best_epoch + 1
        elif progress and progress.get("early_stopping"):
            best_epoch = int(progress["early_stopping"]["best_epoch"]) + 1
        for candidate in history:
            if best_epoch is not None and candidate["epoch"] == best_epoch:
                row = candidate
    return {k: float(v) for k, v in row.items() if k not in ("epoch", "learning_rate", "seconds")
            and isinstance(v, (int, float)) and math.isfinite(float(v))}
