"""What a training run is asked to do (TrainRequest) and what it reports (TrainResult)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mlcli.config import LoadedConfig


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
    callbacks: list = field(default_factory=list)  # more Keras callbacks (a sweep's pruning reporter)


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
    cost: dict | None = None  # FLOPs per layer and epoch, training memory (mlcli.model.table.cost_summary)

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
        if self.cost is not None:
            doc["cost"] = self.cost
        return doc


def resume_command(request: TrainRequest) -> str:
    return f"mlcli {'finetune' if request.parent else 'train'} --resume {request.run_dir}"
