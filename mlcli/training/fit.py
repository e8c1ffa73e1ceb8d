"""model.fit over a run's remaining epochs, with mlcli's callbacks: history rows, the best checkpoint,
resume state, progress, divergence and interrupt guards, early stopping that survives a resume."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlcli.checkpoint.archive import model_facts
from mlcli.data.pipeline import evaluation_batch_size, evaluation_dataset, first_rows, steps_per_epoch, training_dataset
from mlcli.model.augment import augmentation
from mlcli.run import files, resume
from mlcli.training.request import TrainRequest


@dataclass
class Fitted:
    status: str  # completed | diverged | interrupted
    best: dict | None
    early: Any  # ResumableEarlyStopping or None
    guard: Any
    interrupt: Any


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
    val_ds = None
    if prepared.validation is not None:
        val_ds = evaluation_dataset(prepared.validation, batch_size=evaluation_batch_size(batch), encoding=encoding,
                                    num_classes=num_classes)

    epoch_variable = tf.Variable(first_epoch, dtype=tf.int64, trainable=False)
    callbacks.insert(0, cb.SetEpoch(epoch_variable))

    augment = augmentation(request.loaded)  # data.augment: training batches only

    def fit(start_epoch: int, end_epoch: int, start_step: int, extra_callbacks: list) -> None:
        dataset = training_dataset(
            prepared.train, batch_size=batch, seed=config.seed, shuffle=config.data.shuffle, epoch=epoch_variable,
            encoding=encoding, num_classes=num_classes, first_step=start_step, augment=augment,
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
    return Fitted(status, keeper.best, early, guard, interrupt)
