"""model.fit over a run's remaining epochs, with mlcli's callbacks: history rows, the best checkpoint,
resume state, progress, divergence and interrupt guards, early stopping that survives a resume."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from mlcli.checkpoint.archive import model_facts
from mlcli.data.pipeline import evaluation_batch_size, evaluation_dataset, first_rows, steps_per_epoch, training_dataset
from mlcli.model.augment import augmentation
from mlcli.run import files, resume
from mlcli.training import frozen_backbone
from mlcli.training.request import TrainRequest


@dataclass
class Fitted:
    status: str  # completed | diverged | interrupted
    best: dict | None
    early: Any  # ResumableEarlyStopping or None
    guard: Any
    interrupt: Any
    notes: list[str] = field(default_factory=list)


def fit(request: TrainRequest, model, prepared, encoding: str, batch: int, progress: dict | None, extras: dict,
         history: list[dict], weights: dict[int, float] | None) -> Fitted:
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
        return Fitted("completed", best, early, guard, interrupt)

    keeper = cb.StateKeeper(
        run_dir, history=history, monitor=config.training.checkpoint.monitor if prepared.validation else None,
        mode=config.training.checkpoint.mode, best=best, guard=guard, interrupt=interrupt, steps=steps,
        every_steps=config.training.checkpoint_every_steps, early_stopping=early, first_step=first_step,
        facts=model_facts(prepared),
    )
    progress_bar = cb.Progress(epochs, steps, first_step, every=request.progress_every)
    summaries = cb.EpochSummaries(run_dir / files.LOGS)
    callbacks = [guard, interrupt] + ([early] if early is not None else []) + [keeper, summaries, progress_bar] + list(request.callbacks)
    augment = augmentation(request.loaded)  # data.augment: training batches only
    # A frozen backbone's outputs computed once: the layers after it train on them (same math).
    train_split, validation_split, fitted_model, notes = prepared.train, prepared.validation, model, []
    eval_batch = evaluation_batch_size(batch)  # no gradients: validation, and the backbone's one pass
    backbone = frozen_backbone.cacheable_backbone(config, model, prepared, augment)
    if backbone is not None:
        train_split = frozen_backbone.feature_split(backbone, prepared.train, eval_batch)
        if validation_split is not None:
            validation_split = frozen_backbone.feature_split(backbone, validation_split, eval_batch)
        fitted_model = frozen_backbone.head_model(model, backbone)
        notes.append(frozen_backbone.note(prepared.train.rows))

    val_ds = None
    if validation_split is not None:
        val_ds = evaluation_dataset(validation_split, batch_size=eval_batch, encoding=encoding,
                                    num_classes=num_classes)

    epoch_variable = tf.Variable(first_epoch, dtype=tf.int64, trainable=False)
    callbacks.insert(0, cb.SetEpoch(epoch_variable))

    def fit(start_epoch: int, end_epoch: int, start_step: int, extra_callbacks: list) -> None:
        dataset = training_dataset(
            train_split, batch_size=batch, seed=config.seed, shuffle=config.data.shuffle, epoch=epoch_variable,
            encoding=encoding, num_classes=num_classes, first_step=start_step, augment=augment,
        )
        every = callbacks + extra_callbacks
        if fitted_model is not model:
            every = frozen_backbone.callbacks_of(model, fitted_model, every)
        fitted_model.fit(dataset, validation_data=val_ds, epochs=end_epoch, initial_epoch=start_epoch,
                         callbacks=every, verbose=0, shuffle=False, class_weight=weights)

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
    except BaseException:
        with contextlib.suppress(Exception):  # the error in flight is the one to report
            keeper.wait()
        raise
    finally:
        interrupt.restore()
        progress_bar.close()
        summaries.close()
    keeper.wait()  # the last resume point is on disk before the run says how it ended
    status = "diverged" if guard.diverged else "interrupted" if interrupt.interrupted else "completed"
    return Fitted(status, keeper.best, early, guard, interrupt, notes)
