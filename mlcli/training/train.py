"""Compile + fit + save. `train` and `finetune` share this; finetune only prepares the model.

Order matters for "nothing lost": config and data are checked, and the model is built, before the
run directory is touched; every file is written atomically; the resume state is written last at
each epoch end.
"""

from __future__ import annotations

import contextlib
import warnings

from mlcli import console, runtime
from mlcli.config import to_dict
from mlcli.config.yamlio import dump_yaml
from mlcli.data.feature_report import show_features
from mlcli.data.formats.csv import Dialect, use_dialect
from mlcli.data.image_split import unreadable_image
from mlcli.data.labels import label_encoding
from mlcli.data.load import prepare_data
from mlcli.errors import ConfigError, Diverged, Interrupted, StorageError
from mlcli.model.build import build_model
from mlcli.model.compile import build_loss, build_metrics, build_optimizer
from mlcli.model.finetune_model import parent_classes, parent_feature_types
from mlcli.model.heads import check_output_width
from mlcli.model.label_transform import transform_of, transformed_loss
from mlcli.model.memory import check_fits_in_memory, training_memory
from mlcli.model.table import backbone_note, cost_summary
from mlcli.run import files, resume
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
from mlcli.training import cluster, distribute
from mlcli.training.class_weights import by_label, class_weights
from mlcli.training.finish import finish
from mlcli.training.fit import fit
from mlcli.training.request import TrainRequest, TrainResult, resume_command


def run_training(request: TrainRequest) -> TrainResult:
    """Every CSV file of the run is read in its data.csv dialect (mlcli.data.formats.csv)."""
    with use_dialect(Dialect.of(request.loaded.config.data)):
        return _run_training(request)


def _run_training(request: TrainRequest) -> TrainResult:
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
        if request.parent is not None and config.data.label_transform != "none":
            raise ConfigError(loaded.problem(("data", "label_transform"), "finetune of a model trained with "
                                             "data.label_transform is not supported yet — train a new run instead"))
        # Every Keras name is resolved before any data is read: a typo costs no time.
        build_optimizer(loaded), build_loss(loaded), build_metrics(loaded)
        # finetune reads its data the way the parent was trained (typed or plain)
        parent_types = parent_feature_types(request.parent) if request.parent is not None else {}
        prepared = prepare_data(config, _parent_classes(request), **parent_types)
        for warning in prepared.warnings:
            console.info(warning)
        if prepared.features is not None:
            show_features(prepared.features, "features" if request.parent is None else
                          "features, read as the parent was trained (its vocabularies and statistics stay in the "
                          "model; these are this data's)")
        check_fits_in_memory(loaded, prepared.input_shape, finetune=request.parent is not None)
        try:
            if not distribution.writes_run_dir:  # another worker than the chief: see train_in_scratch
                return distribute.train_in_scratch(_train, request, prepared, device, precision, distribution)
            return _train(request, prepared, device, precision, distribution)
        except Exception as exc:  # a worker lost before the run's first file (e.g. while the state is shared)
            lost = cluster.lost_peer(exc, distribution, request.command)
            if lost is None:
                raise
            raise lost from None


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
                                features=prepared.features, label_transform=prepared.label_transform)
            notes.extend(backbone_note(model))

        outputs = int(model.output_shape[-1])
        encoding = label_encoding(config, prepared.task, outputs, len(prepared.classes or []))
        check_output_width(loaded, prepared, encoding, outputs)
        weights = class_weights(loaded, prepared)
        spe = distribution.steps_per_execution(config, prepared.train.rows)
        batch = distribution.global_batch(config.training.batch_size)
        # the loss on data.label_transform's scale, read from the model's own undo layers
        with warnings.catch_warnings():  # Keras warns when it turns XLA off: the note below says it instead
            warnings.filterwarnings("ignore", message=".*jit_compile")
            model.compile(optimizer=build_optimizer(loaded),
                          loss=transformed_loss(build_loss(loaded), transform_of(model)),
                          metrics=build_metrics(loaded), steps_per_execution=spe,
                          jit_compile=runtime.jit_compile_for(config.training.jit_compile, device))
        if config.training.jit_compile is True and not model.jit_compile:
            notes.append("training.jit_compile true -> false: Keras compiles this model without XLA "
                         "(runtime.deterministic is on, or a layer does not support XLA)")
        shared = None
        if distribution.role is not None:  # every worker continues from the chief's saved state
            shared = cluster.share_point(distribution, run_dir, progress, batch, config)
            progress, batch = shared.progress, shared.batch
            if progress is not None:
                extras = resume.assign_point(model, shared.arrays, run_dir)
        elif progress is not None:
            batch, note = cluster.kept_batch(run_dir, read_manifest(run_dir).get("distribute"), distribution.replicas,
                                             batch)
            notes += [note] if note else []
            extras = resume.restore_point(model, run_dir, progress)
        if progress is not None:
            notes += [resume.describe(progress)] + ([shared.note] if shared and shared.note else [])
        distribution.prepare_model(model)
    notes += [n for n in [distribution.describe(batch), *distribution.notes] if n]

    if not request.resume:
        stack.enter_context(hold_lock(run_dir))
        if request.replace:  # every check has passed: only now does the old run give way
            remove_replaced_run(run_dir)
    files.remove_temporaries(run_dir)
    first_epoch = int(progress["epochs_completed"]) if progress else 0
    history = (shared.history if shared is not None else read_history(run_dir / files.HISTORY)[:first_epoch]) \
        if progress else []
    manifest = start_manifest(request, prepared, device.describe(), precision, model, now(), finetune_facts,
                              progress)
    manifest["distribute"] = distribution.facts(batch, spe, requested=config.training.batch_size,
                                                jit_compile=bool(model.jit_compile))
    manifest["class_weight"] = by_label(weights, prepared.classes)
    memory = training_memory(loaded, prepared.input_shape, finetune=request.parent is not None)
    manifest["cost"] = cost_summary(model, prepared.train.rows, memory.needed if memory is not None else None)
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
        fitted = fit(request, model, prepared, encoding, batch, progress, extras, history, weights)
        notes += fitted.notes
        return finish(request, model, prepared, encoding, batch, fitted, manifest, history,
                       device.describe(), precision, notes, finetune_facts)
    except (Diverged, Interrupted):
        raise  # _finish has recorded the outcome
    except KeyboardInterrupt:
        manifest.update(status="interrupted", ended_at=now(), epochs_completed=len(history),
                        interrupted={"signal": "SIGINT", "epochs_completed": len(history)})
        write_manifest(run_dir, manifest)
        raise Interrupted(f"stopped after {len(history)} finished epoch(s); the last saved state is in {run_dir}",
                          hint=f"continue with: {resume_command(request)}") from None
    except BaseException as exc:
        lost = cluster.lost_peer(exc, distribution, request.command)
        if lost is not None:  # the run stopped because a peer did: resumable, not failed
            manifest.update(status="interrupted", ended_at=now(), epochs_completed=len(history),
                            interrupted={"reason": "lost worker", "message": lost.message,
                                         "epochs_completed": len(history)})
            write_manifest(run_dir, manifest)
            raise lost from None
        unreadable = unreadable_image(prepared, exc)  # data.stream: true met a file that does not decode
        if unreadable is not None:
            _record_failure(request, manifest, unreadable)
            raise unreadable from None
        _record_failure(request, manifest, exc)
        raise


def _record_failure(request: TrainRequest, manifest: dict, exc: BaseException) -> None:
    """run.json says `failed` and why, once the run has written one; a full disk's hint is the command
    that continues the run once there is room."""
    from mlcli.run import resume  # deferred: imports numpy, like the rest of a run's ending

    run_dir = request.run_dir
    if isinstance(exc, StorageError):
        exc.hint = f"free space on that disk, then continue with: {resume_command(request)}"
    if not has_manifest(run_dir):
        return  # stopped before its first run.json: nothing claims to be running
    try:  # what --resume continues from: a write that failed at an epoch's end lost that epoch
        saved = resume.read_progress(run_dir)
    except (OSError, ValueError):
        saved = None
    if not record_failure(run_dir, manifest, exc, int(saved["epochs_completed"]) if saved else 0):
        console.error(f"note: {run_dir / files.RUN} could not record the failure either: it keeps its last "
                      "complete version")
