"""Compile + fit + save. `train` and `finetune` share this; finetune only prepares the model.

Order matters for "nothing lost": config and data are checked, and the model is built, before the
run directory is touched; every file is written atomically; the resume state is written last at
each epoch end.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mlcli import console, runtime
from mlcli.checkpoint.archive import model_facts, save_model
from mlcli.config import LoadedConfig, to_dict
from mlcli.config.yamlio import dump_yaml
from mlcli.data.feature_report import show_features
from mlcli.data.labels import label_encoding
from mlcli.data.load import prepare_data
from mlcli.data.pipeline import evaluation_dataset, first_rows, steps_per_epoch, training_dataset
from mlcli.errors import ConfigError, Diverged, Interrupted, StorageError
from mlcli.model.build import build_model
from mlcli.model.compile import build_loss, build_metrics, build_optimizer
from mlcli.model.finetune_model import parent_classes, parent_feature_types
from mlcli.model.heads import check_output_width
from mlcli.model.memory import check_fits_in_memory
from mlcli.run import files, resume
from mlcli.run.diverged import restart_hint
from mlcli.run.history import read_history
from mlcli.run.lock import hold_lock
from mlcli.run.manifest import (
    check_same_data,
    has_manifest,
    now,
    read_manifest,
    record_failure,
    start_manifest,
    write_manifest,
)
from mlcli.run.output import remove_replaced_run
from mlcli.training import distribute
from mlcli.training.class_weights import by_label, class_weights
from mlcli.use.plots import start_run_plots


@dataclass
class TrainRequest:
    loaded: LoadedConfig
    run_dir: Path
    command: list[str]
    resume: bool = False  # continue the unfinished run in run_dir
    # finetune: builds the model from the parent; returns (model, facts for run.json)
    make_model: Callable[[LoadedConfig, Any], tuple[Any, dict]] | None = None
    parent: dict | None = None
    replace: bool = False  # --force: remove the old run in run_dir once this one is ready to write
    epochs_before: int | None = None  # resume raising training.epochs: the epochs the run was started with
    progress_every: float | None = None  # --progress-every: seconds between progress lines inside an epoch


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
    distribute: dict | None = None  # strategy, replicas, batch per replica (run.json's "distribute")
    model_epoch: int | None = None  # the epoch whose weights model.keras and metrics.json hold

    def document(self) -> dict:
        """The --json document of docs/contract.md §1 (plus the parameter counts and layer table)."""
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
        if self.distribute is not None:
            doc["distribute"] = self.distribute
        if self.model_epoch is not None:
            doc["model_epoch"] = self.model_epoch
        return doc


def run_training(request: TrainRequest) -> TrainResult:
    loaded = request.loaded
    too_many = runtime.cpu_count_problem(loaded.config.runtime.device)
    if too_many:
        raise ConfigError(loaded.problem(("runtime", "device"), too_many))
    runtime.import_tensorflow()

    config = loaded.config

    device = runtime.select_device(config.runtime.device)
    # Before TensorFlow runs any op: MultiWorkerMirroredStrategy sets up the collectives when created.
    distribution = distribute.create(config.runtime, device)
    precision = runtime.choose_precision(config.runtime.precision, device)
    with runtime.run_settings(precision, config.runtime.deterministic):
        runtime.seed_everything(config.seed)
        # Every Keras name is resolved before any data is read: a typo costs no time.
        build_optimizer(loaded), build_loss(loaded), build_metrics(loaded)
        # finetune reads its data the way the parent was trained (typed or plain)
        parent_types = parent_feature_types(request.parent) if request.parent is not None else {}
        prepared = prepare_data(config, _parent_classes(request), **parent_types)
        if prepared.features is not None:
            show_features(prepared.features, "features" if request.parent is None else
                          "features, read as the parent was trained (its vocabularies and statistics stay in the "
                          "model; these are this data's)")
        check_fits_in_memory(loaded, prepared.input_shape, finetune=request.parent is not None)
        if not distribution.writes_run_dir:  # another worker than the chief: see train_in_scratch
            return distribute.train_in_scratch(_train, request, prepared, device, precision, distribution)
        return _train(request, prepared, device, precision, distribution)


def _parent_classes(request: TrainRequest) -> list | None:
    """finetune keeping the parent's output layer (no finetune.head): the classes its outputs stand for."""
    if request.parent is None or request.loaded.config.finetune.head is not None:
        return None

    return parent_classes(request.parent)


def _train(request: TrainRequest, prepared, device, precision: str, distribution) -> TrainResult:
    with contextlib.ExitStack() as stack:
        if request.resume:  # lock before reading the state a live run may be rewriting
            stack.enter_context(hold_lock(request.run_dir))
        return _train_locked(request, prepared, device, precision, distribution, stack)


def _train_locked(request: TrainRequest, prepared, device, precision: str, distribution, stack) -> TrainResult:
    loaded = request.loaded
    config = loaded.config
    run_dir = request.run_dir
    progress = resume.read_progress(run_dir) if request.resume else None

    notes: list[str] = list(prepared.train.notes) + list(prepared.notes)
    finetune_facts = None
    extras: dict = {}
    if progress is not None:
        check_same_data(run_dir, prepared)
    with distribution.scope():  # variables made here are mirrored across the strategy's replicas
        # A resumed run rebuilds the model it started with; the resume point's values go in below.
        if request.make_model is not None:
            model, finetune_facts = request.make_model(loaded, prepared)
            notes.extend(finetune_facts.get("notes", []))
        else:  # streamed data brings its statistics, computed chunk by chunk, instead of its rows
            model = build_model(loaded, prepared.input_shape, prepared.train.normalization_input,
                                output_float32=precision != "float32", feature_names=prepared.feature_names,
                                features=prepared.features)

        outputs = int(model.output_shape[-1])
        encoding = label_encoding(config, prepared.task, outputs, len(prepared.classes or []))
        check_output_width(loaded, prepared, encoding, outputs)
        weights = class_weights(loaded, prepared)
        spe = distribution.steps_per_execution(config, prepared.train.rows)
        batch = distribution.global_batch(config.training.batch_size)
        model.compile(optimizer=build_optimizer(loaded), loss=build_loss(loaded), metrics=build_metrics(loaded),
                      steps_per_execution=spe)
        if progress is not None:
            extras = resume.restore_point(model, run_dir, progress)
            notes.append(resume.describe(progress))
        distribution.prepare_model(model)
    notes += [n for n in [distribution.describe(batch), *distribution.notes] if n]

    if not request.resume:
        stack.enter_context(hold_lock(run_dir))
        if request.replace:  # every check has passed: only now does the old run give way
            remove_replaced_run(run_dir)
    files.remove_temporaries(run_dir)
    first_epoch = int(progress["epochs_completed"]) if progress else 0
    history = read_history(run_dir / files.HISTORY)[:first_epoch] if progress else []
    manifest = start_manifest(request, prepared, device.describe(), precision, model, now(), finetune_facts,
                              progress)
    manifest["distribute"] = distribution.facts(batch, spe, requested=config.training.batch_size)
    manifest["class_weight"] = by_label(weights, prepared.classes)
    if request.epochs_before is not None:  # the one key a resume may change: the run goes on to more epochs
        manifest["epochs_changed"] = [*read_manifest(run_dir).get("epochs_changed", []),
                                      {"from": request.epochs_before, "to": config.training.epochs, "at": now()}]
        notes.append(f"training.epochs {request.epochs_before} -> {config.training.epochs}: the run continues "
                     f"after epoch {len(history)}, its history going on")
    try:
        if progress is None or request.epochs_before is not None:
            files.write_text(run_dir / files.CONFIG, dump_yaml(to_dict(config)))
        if progress is None and prepared.classes is not None:
            files.write_json(run_dir / files.LABELS, prepared.classes)
        write_manifest(run_dir, manifest)
        fitted = _fit(request, model, prepared, encoding, batch, progress, extras, history, weights)
        return _finish(request, model, prepared, encoding, batch, fitted, manifest, history,
                       device.describe(), precision, notes, finetune_facts)
    except (Diverged, Interrupted):
        raise  # _finish has recorded the outcome
    except KeyboardInterrupt:
        manifest.update(status="interrupted", ended_at=now(), epochs_completed=len(history),
                        interrupted={"signal": "SIGINT", "epochs_completed": len(history)})
        write_manifest(run_dir, manifest)
        raise Interrupted(f"stopped after {len(history)} finished epoch(s); the last saved state is in {run_dir}",
                          hint=f"continue with: {_resume_command(request)}") from None
    except BaseException as exc:
        _record_failure(request, manifest, exc)
        raise


def _record_failure(request: TrainRequest, manifest: dict, exc: BaseException) -> None:
    """run.json says `failed` and why, once the run has written one; a full disk's hint is the command
    that continues the run once there is room."""
    from mlcli.run import resume  # deferred: imports numpy, like the rest of a run's ending

    run_dir = request.run_dir
    if isinstance(exc, StorageError):
        exc.hint = f"free space on that disk, then continue with: {_resume_command(request)}"
    if not has_manifest(run_dir):
        return  # stopped before its first run.json: nothing claims to be running
    try:  # what --resume continues from: a write that failed at an epoch's end lost that epoch
        saved = resume.read_progress(run_dir)
    except (OSError, ValueError):
        saved = None
    if not record_failure(run_dir, manifest, exc, int(saved["epochs_completed"]) if saved else 0):
        console.error(f"note: {run_dir / files.RUN} could not record the failure either: it keeps its last "
                      "complete version")


@dataclass
class _Fitted:
    status: str  # completed | diverged | interrupted
    best: dict | None
    early: Any  # ResumableEarlyStopping or None
    guard: Any
    interrupt: Any


def _fit(request: TrainRequest, model, prepared, encoding: str, batch: int, progress: dict | None, extras: dict,
         history: list[dict], weights: dict[int, float] | None) -> _Fitted:
    """model.fit over the remaining epochs, `batch` rows a step; a mid-epoch resume first finishes its epoch."""
    import tensorflow as tf  # deferred: imports TensorFlow

    from mlcli.training import callbacks as cb  # deferred: imports TensorFlow

    config = request.loaded.config
    run_dir = request.run_dir
    epochs = config.training.epochs
    num_classes = len(prepared.classes or [])
    first_epoch = int(progress["epochs_completed"]) if progress else 0
    first_step = int(progress.get("step", 0)) if progress else 0
    steps = steps_per_epoch(prepared.train.rows, batch)

    early = None
    es_config = config.training.early_stopping
    if es_config is not None:
        early = cb.ResumableEarlyStopping(
            restored=(progress or {}).get("early_stopping"), restored_weights=resume.early_stopping_weights(extras),
            monitor=es_config.monitor, patience=es_config.patience, restore_best_weights=es_config.restore_best_weights,
            min_delta=es_config.min_delta, mode=es_config.mode,
        )
        early.set_model(model)
    guard = cb.DivergenceGuard(steps, first_step)
    interrupt = cb.InterruptGuard()
    best = (progress or {}).get("best")
    stopped_early = bool(((progress or {}).get("early_stopping") or {}).get("stopped"))
    if first_epoch >= epochs or stopped_early:
        return _Fitted("completed", best, early, guard, interrupt)

    keeper = cb.StateKeeper(
        run_dir, history=history, monitor=config.training.checkpoint.monitor if prepared.validation else None,
        mode=config.training.checkpoint.mode, best=best, guard=guard, interrupt=interrupt, steps=steps,
        every_steps=config.training.checkpoint_every_steps, early_stopping=early, first_step=first_step,
        facts=model_facts(prepared),
    )
    progress_bar = cb.Progress(epochs, steps, first_step, every=request.progress_every)
    summaries = cb.EpochSummaries(run_dir / files.LOGS)
    callbacks = [guard, interrupt] + ([early] if early is not None else []) + [keeper, summaries, progress_bar]
    val_ds = None
    if prepared.validation is not None:
        val_ds = evaluation_dataset(prepared.validation, batch_size=max(batch, 256), encoding=encoding,
                                    num_classes=num_classes)

    epoch_variable = tf.Variable(first_epoch, dtype=tf.int64, trainable=False)
    callbacks.insert(0, cb.SetEpoch(epoch_variable))

    def fit(start_epoch: int, end_epoch: int, start_step: int, extra_callbacks: list) -> None:
        dataset = training_dataset(
            prepared.train, batch_size=batch, seed=config.seed, shuffle=config.data.shuffle, epoch=epoch_variable,
            encoding=encoding, num_classes=num_classes, first_step=start_step,
        )
        model.fit(dataset, validation_data=val_ds, epochs=end_epoch, initial_epoch=start_epoch,
                  callbacks=callbacks + extra_callbacks, verbose=0, shuffle=False, class_weight=weights)

    interrupt.install()
    try:
        if first_step:
            # Keras creates metric variables at the first step; build them now so that the running
            # totals of the interrupted epoch can be put back before that step (a row for each replica).
            x, y = first_rows(prepared.train, model.distribute_strategy.num_replicas_in_sync, encoding, num_classes)
            model.evaluate(x, y, verbose=0)
            fit(first_epoch, first_epoch + 1, first_step, [cb.RestoreMetrics(extras)])
            first_epoch += 1
        if first_epoch < epochs and not model.stop_training:
            fit(first_epoch, epochs, 0, [])
    finally:
        interrupt.restore()
        progress_bar.close()
        summaries.close()
    status = "diverged" if guard.diverged else "interrupted" if interrupt.interrupted else "completed"
    return _Fitted(status, keeper.best, early, guard, interrupt)


def _resume_command(request: TrainRequest) -> str:
    return f"mlcli {'finetune' if request.parent else 'train'} --resume {request.run_dir}"


def _finish(request: TrainRequest, model, prepared, encoding: str, batch: int, fitted: _Fitted, manifest: dict,
            history: list[dict], device: str, precision: str, notes: list[str], finetune_facts) -> TrainResult:
    """Write what the outcome calls for; raise Diverged / Interrupted for those outcomes."""

    run_dir = request.run_dir
    config = request.loaded.config
    completed = len(history)
    manifest.update(epochs_completed=completed, best=fitted.best)
    document = {"run_dir": str(run_dir), "status": fitted.status, "epochs_completed": completed,
                "metrics": {}, "best": fitted.best, "device": device, "precision": precision}
    if fitted.status == "diverged":
        where = fitted.guard.where
        point = resume.read_progress(run_dir)
        if point is not None:  # model.keras is the last finite state
            resume.restore_point(model, run_dir, point)
            save_model(model, run_dir / files.MODEL, model_facts(prepared))
        manifest.update(status="diverged", diverged=where, ended_at=now())
        write_manifest(run_dir, manifest)
        error = Diverged(
            f"loss became {where['loss']} at epoch {where['epoch']}, step {where['step']}; "
            + (f"the last good state ({resume.describe(point)[len('resuming after '):]}) is kept in {run_dir}"
               if point else "no epoch had finished, so there is no model to keep"),
            hint=restart_hint(run_dir),
        )
        error.document = document
        raise error
    if fitted.status == "interrupted":
        manifest.update(status="interrupted", ended_at=now(),
                        interrupted={"signal": fitted.interrupt.signal_name, "epochs_completed": completed})
        write_manifest(run_dir, manifest)
        error = Interrupted(
            f"{fitted.interrupt.signal_name}: stopped after {completed} finished epoch(s); state saved in {run_dir}",
            hint=f"continue with: {_resume_command(request)}",
        )
        error.document = document
        raise error


    # model.keras holds the last epoch, or the one early stopping put back (restore_best_weights)
    model_epoch = (fitted.early.restore_best() if fitted.early is not None else None) or completed
    # The pictures render while the model is saved and tested (they only read it). They never fail a
    # finished run. A streamed split is not held in memory: no confusion matrix for it, the curves only.
    painter = start_run_plots(run_dir, history, model,
                              None if prepared.train.streamed else prepared, config)
    save_model(model, run_dir / files.MODEL, model_facts(prepared))
    metrics = _final_metrics(history, model_epoch)
    if prepared.test is not None:
        test_ds = evaluation_dataset(prepared.test, batch_size=max(batch, 256),
                                     encoding=encoding, num_classes=len(prepared.classes or []))
        scores = model.evaluate(test_ds, verbose=0, return_dict=True)
        metrics.update({f"test_{k}": float(scores[k]) for k in sorted(scores, key=lambda k: (k != "loss", k))})
    files.write_json(run_dir / files.METRICS, metrics)
    painter.join()
    manifest.update(status="completed", ended_at=now(), metrics=metrics, model_epoch=model_epoch)
    write_manifest(run_dir, manifest)
    return TrainResult(
        run_dir=run_dir, status="completed", epochs_completed=completed, metrics=metrics, best=fitted.best,
        device=device, precision=precision, parameters=manifest["parameters"], layers=manifest["layers"],
        notes=notes, finetune=manifest.get("finetune"), distribute=manifest["distribute"], model_epoch=model_epoch,
    )


def _final_metrics(history: list[dict], model_epoch: int) -> dict[str, float]:
    """Train/val metrics of the epoch whose weights model.keras holds (the restored best, or the last)."""
    if not history:
        return {}
    row = next((r for r in history if r["epoch"] == model_epoch), history[-1])
    return {k: float(v) for k, v in row.items() if k not in ("epoch", "learning_rate", "seconds")
            and isinstance(v, (int, float)) and math.isfinite(float(v))}
