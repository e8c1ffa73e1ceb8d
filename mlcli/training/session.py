"""Which run directory a train/finetune command writes, and whether it starts, continues or
only reports a run (docs/contract.md §1: --output, --force, --resume)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlcli.config import LoadedConfig, load_config
from mlcli.config.yamlio import read_yaml_file
from mlcli.errors import ConfigError, UsageError
from mlcli.model.finetune_config import load_finetune_config
from mlcli.model.finetune_model import model_from_parent
from mlcli.run import files, resume
from mlcli.run.diverged import restart_hint
from mlcli.run.manifest import check_resume_config, read_manifest
from mlcli.run.output import claim_output, default_run_dir
from mlcli.training.distribute import cluster_role
from mlcli.training.request import TrainRequest, TrainResult
from mlcli.training.train import run_training


@dataclass
class RunPlan:
    kind: str  # train | finetune
    loaded: LoadedConfig
    run_dir: Path
    resume: bool  # continue the unfinished run in run_dir
    finished: object | None = None  # a TrainResult when the run had already completed
    parent: dict | None = None  # finetune: the parent checkpoint
    replace: bool = False  # --force on a run directory: its files go when the new run starts writing
    epochs_before: int | None = None  # --resume raising training.epochs: what the run was started with


def plan_run(kind: str, config: Path | None, parent: Path | None, output: Path | None,
             overrides: list[str], resume: bool, force: bool) -> RunPlan:
    if resume and config is not None and config.is_dir():
        # `mlcli train --resume DIR`: the config comes from DIR.
        run_dir = config
        if output is not None and output.resolve() != run_dir.resolve():
            raise UsageError(f"--resume {run_dir} and --output {output} name different directories")
        if not files.is_run(run_dir):
            if (run_dir / files.LOCK).is_file():
                raise UsageError(
                    f"{run_dir}: the run there was stopped before it wrote its config, so --resume DIR cannot "
                    "know how to continue it",
                    hint=f"start it again with: mlcli {kind} CONFIG --output {run_dir} --resume",
                )
            raise UsageError(f"{run_dir} is not an mlcli run directory (no {files.RUN} or {files.CONFIG})",
                             hint="pass the directory a previous `mlcli train` wrote")
        manifest = read_manifest(run_dir)
        if kind == "train" and manifest.get("parent"):
            raise UsageError(f"{run_dir} is a finetune run", hint=f"continue it with: mlcli finetune --resume {run_dir}")
        if kind == "finetune" and not manifest.get("parent"):
            raise UsageError(f"{run_dir} is a train run, not a finetune run",
                             hint=f"continue it with: mlcli train --resume {run_dir}")
        loaded = load_config(run_dir / files.CONFIG, overrides)
        if not _writes_run_dir(loaded):  # another worker of a multi-worker run: the chief shares its state
            return RunPlan(kind, loaded, run_dir, resume=False, parent=manifest.get("parent"))
        return _continue_or_report(kind, loaded, run_dir, manifest.get("parent"))

    if resume and config is not None and not config.exists() and config.suffix.lower() not in (".yaml", ".yml"):
        # `mlcli train --resume DIR` with a DIR that is not there: say so as a run directory, not a config.
        raise UsageError(f"--resume {config}: no such run directory",
                         hint="pass the directory a previous `mlcli train` wrote (or CONFIG --output DIR --resume)")
    if kind == "finetune":

        if parent is None:
            raise UsageError("mlcli finetune needs --from CKPT (a run directory or a .keras file)")
        loaded, parent_facts = load_finetune_config(config, parent, overrides)
    else:
        if config is None:
            raise UsageError("missing CONFIG", hint="mlcli train CONFIG [--output DIR], or mlcli train --resume DIR")
        if config.is_dir():
            raise UsageError(f"{config} is a directory", hint=f"to continue a run: mlcli train --resume {config}")
        loaded = load_config(config, overrides)
        parent_facts = None

    name = loaded.config.name or "run"
    if not _writes_run_dir(loaded):  # a worker other than the chief never touches the run directory
        return RunPlan(kind, loaded, output if output is not None else Path("runs") / name, resume=False,
                       parent=parent_facts)
    if resume:
        run_dir = output if output is not None else Path("runs") / name
        if files.is_run(run_dir):
            return _continue_or_report(kind, loaded, run_dir, parent_facts)
        files.check_writable_folder(run_dir, f"run directory {run_dir}")
        return RunPlan(kind, loaded, run_dir, resume=False, parent=parent_facts)
    if output is not None:
        replace = claim_output(output, force)
        return RunPlan(kind, loaded, output, resume=False, parent=parent_facts, replace=replace)
    return RunPlan(kind, loaded, default_run_dir(name), resume=False, parent=parent_facts)


def _writes_run_dir(loaded: LoadedConfig) -> bool:
    """Whether this process writes the run directory: False for a multi-worker run's other workers,
    which train in a scratch directory and, on --resume, continue from the state the chief shares
    (training/cluster.py), so they need no run directory of their own."""
    role = cluster_role(loaded.config.runtime.distribute)
    return role is None or role.is_chief


def _continue_or_report(kind: str, loaded: LoadedConfig, run_dir: Path, parent: dict | None) -> RunPlan:
    manifest = read_manifest(run_dir)
    before = _saved_epochs(run_dir) if manifest.get("config_hash") else None
    if before is not None and before != loaded.config.training.epochs:
        # training.epochs is the one key a resume may change: any other difference is still refused.
        check_resume_config(run_dir, _with_epochs(loaded, before))
        _check_more_epochs(run_dir, loaded.config.training.epochs)
        return RunPlan(kind, loaded, run_dir, resume=True, parent=manifest.get("parent") or parent,
                       epochs_before=before)
    if manifest.get("config_hash"):
        try:
            check_resume_config(run_dir, loaded)
        except ConfigError as exc:
            if manifest.get("status") != "diverged":
                raise
            # e.g. a lower learning rate: not a resume, but a new run is what can work
            raise ConfigError(exc.problems, hint=restart_hint(run_dir)) from None
    if manifest.get("status") == "completed" and (run_dir / files.MODEL).is_file():
        return RunPlan(kind, loaded, run_dir, resume=True, finished=finished_result(run_dir), parent=parent)
    return RunPlan(kind, loaded, run_dir, resume=True, parent=manifest.get("parent") or parent)


def _saved_epochs(run_dir: Path) -> int | None:
    """training.epochs of the run's own config.yaml (None when it cannot say)."""
    try:
        saved, _ = read_yaml_file(run_dir / files.CONFIG)
        epochs = saved["training"]["epochs"]
    except (ConfigError, OSError, KeyError, TypeError):
        return None
    return epochs if isinstance(epochs, int) else None


def _with_epochs(loaded: LoadedConfig, epochs: int) -> LoadedConfig:
    config = loaded.config
    training = config.training.model_copy(update={"epochs": epochs})
    return LoadedConfig(config.model_copy(update={"training": training}), loaded.positions, loaded.source)


def _check_more_epochs(run_dir: Path, epochs: int) -> None:
    """A run continues to `epochs` only from where it is: not below the epochs it has finished, and not
    after early stopping ended it (more epochs would not train it further)."""
    point = resume.read_progress(run_dir) or {}
    done, step = int(point.get("epochs_completed", 0)), int(point.get("step", 0))
    stopped = (point.get("early_stopping") or {}).get("stopped")
    if stopped:
        raise UsageError(f"training.epochs {epochs}: early stopping ended {run_dir} after epoch {done}, so more "
                         "epochs would not train it further",
                         hint=f"train a new run from it instead: mlcli finetune --from {run_dir} --output NEW_DIR")
    if epochs < done or (epochs == done and step):
        raise UsageError(f"training.epochs {epochs}: {run_dir} has already trained "
                         f"{done} epoch(s){f' and {step} step(s) of the next' if step else ''}, and a resumed run "
                         "only goes on from there",
                         hint=f"give training.epochs of at least {done + bool(step)}, or start a new run")


def finished_result(run_dir: Path):
    """What a completed run reports when asked to resume (nothing to do): a TrainResult."""
    manifest = read_manifest(run_dir)
    metrics = files.read_json(run_dir / files.METRICS) if (run_dir / files.METRICS).is_file() else {}
    return TrainResult(
        run_dir=run_dir, status=manifest.get("status", "completed"),
        epochs_completed=int(manifest.get("epochs_completed", 0)), metrics=metrics,
        best=manifest.get("best"), device=manifest.get("device", "unknown"),
        precision=manifest.get("precision", "unknown"), parameters=manifest.get("parameters", {}),
        layers=manifest.get("layers", []), notes=["the run had already finished: nothing to do"],
        finetune=manifest.get("finetune"), model_epoch=manifest.get("model_epoch"), cost=manifest.get("cost"),
    )


def execute(plan: RunPlan, command: list[str], *, unsafe: bool = False, progress_every: float | None = None,
            callbacks: list | None = None):
    """Run the plan. `unsafe` (--unsafe) lets Keras run code stored in a finetune parent's file;
    `progress_every` (--progress-every): seconds between progress lines inside long epochs."""
    make_model = None
    if plan.kind == "finetune":

        make_model = model_from_parent(plan.parent, unsafe=unsafe)
    request = TrainRequest(plan.loaded, plan.run_dir, command, resume=plan.resume, make_model=make_model,
                           parent=plan.parent, replace=plan.replace, epochs_before=plan.epochs_before,
                           progress_every=progress_every, callbacks=list(callbacks or []))
    return run_training(request)
