"""A run's ending, by its outcome: a diverged run keeps its last finite state, an interrupted one its
resume state; a completed one writes model.keras, metrics.json (test metrics included) and its plots."""

from __future__ import annotations

import math

from mlcli.checkpoint.archive import model_facts, save_model
from mlcli.data.pipeline import evaluation_batch_size, evaluation_dataset
from mlcli.errors import Diverged, Interrupted
from mlcli.run import files, resume
from mlcli.run.diverged import restart_hint
from mlcli.run.manifest import now, write_manifest
from mlcli.training.fit import Fitted
from mlcli.training.request import TrainRequest, TrainResult, resume_command
from mlcli.use.plots import start_run_plots
from mlcli.use.threshold import validation_threshold


def finish(request: TrainRequest, model, prepared, encoding: str, batch: int, fitted: Fitted, manifest: dict,
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
            hint=f"continue with: {resume_command(request)}",
        )
        error.document = document
        raise error

    # model.keras holds the last epoch, or the one early stopping put back (restore_best_weights)
    model_epoch = (fitted.early.restore_best() if fitted.early is not None else None) or completed
    # The pictures render while the model is saved and tested (they only read it). They never fail a
    # finished run. A streamed split is not held in memory: no confusion matrix for it, the curves only.
    painter = start_run_plots(run_dir, history, model,
                              None if prepared.train.streamed else prepared, config)
    facts = model_facts(prepared)
    threshold = validation_threshold(model, prepared, config)  # binary classifiers: --threshold best
    if threshold is not None:
        facts["threshold"] = manifest["threshold"] = threshold
        notes.append(f"F1-best threshold on the validation split: {threshold['best']:.4f} (F1 {threshold['f1']:.4f}); "
                     "use it with --threshold best in evaluate and predict")
    save_model(model, run_dir / files.MODEL, facts)
    metrics = final_metrics(history, model_epoch)
    if prepared.test is not None:
        test_ds = evaluation_dataset(prepared.test, batch_size=evaluation_batch_size(batch),
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
        cost=manifest.get("cost"),
    )


def final_metrics(history: list[dict], model_epoch: int) -> dict[str, float]:
    """Train/val metrics of the epoch whose weights model.keras holds (the restored best, or the last)."""
    if not history:
        return {}
    row = next((r for r in history if r["epoch"] == model_epoch), history[-1])
    return {k: float(v) for k, v in row.items() if k not in ("epoch", "learning_rate", "seconds")
            and isinstance(v, (int, float)) and math.isfinite(float(v))}
