"""A checkpoint and the run around it, rebuilt from the run's own files (DESIGN habit 5).

`evaluate` and `predict` (and later `export`, `finetune --from`) start here: CKPT is a run directory
(its model.keras) or a .keras file. A .keras file inside a run directory (best.keras,
state/...) uses its run's config.yaml, labels.json and run.json; a standalone .keras
file has no feature names, no label vocabulary and no config, so those are taken from the archive:
its recorded loss and metrics, class indices 0..n-1 as labels, features by position.

Nothing here imports TensorFlow until `load_model`, so a bad CKPT or an unknown gate metric is
reported before the 3-4 s TensorFlow start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlcli.config import LoadedConfig, load_config
from mlcli.data.labels import loss_family
from mlcli.errors import UsageError, first_line
from mlcli.run import rundir

STANDALONE_LABEL = "label"  # the label column `evaluate` reads for a standalone .keras file (.npz: y)
_DEFAULT_METRICS = {"classification": ["accuracy"], "regression": ["mae"]}


@dataclass
class Checkpoint:
    model_path: Path
    run_dir: Path | None  # None: a standalone .keras file
    task: str  # classification | regression
    features: list[str] | None  # model input order; None: by position (standalone)
    labels: list[str]  # label column(s)
    classes: list | None  # the vocabulary in output order; standalone: filled by load_model
    loaded: LoadedConfig | None = None  # the run's config.yaml
    compile_config: dict | None = None  # standalone: what the archive recorded
    manifest: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    input_shape: tuple[int, ...] | None = None  # per row, from the archive (so inputs are checked before TF)

    @property
    def standalone(self) -> bool:
        return self.run_dir is None

    def metric_names(self) -> list[str]:
        """The names Keras reports when evaluating (gates use them); no TensorFlow needed."""
        if self.loaded is not None:
            from mlcli.config.checks import metric_base_names

            return metric_base_names(self.loaded.config)
        return ["loss"] + [_metric_name(m) for m in self._standalone_metrics()]

    def from_logits(self) -> bool:
        loss = self._loss()
        if isinstance(loss, dict):
            return bool((loss.get("config") or {}).get("from_logits"))
        if loss is not None and not isinstance(loss, str):
            return bool(loss.arguments().get("from_logits"))
        return False

    def _loss(self) -> Any:
        if self.loaded is not None:
            return self.loaded.config.loss
        return (self.compile_config or {}).get("loss")

    def _standalone_metrics(self) -> list:
        recorded = (self.compile_config or {}).get("metrics")
        if self.compile_config and self.compile_config.get("loss") is not None:
            return list(recorded or [])
        return list(_DEFAULT_METRICS[self.task])

    def encoding(self, output_units: int) -> str:
        """How labels are fed to the loss: onehot | sparse | binary | regression (as training did)."""
        if self.loaded is not None:
            from mlcli.data.labels import label_encoding

            return label_encoding(self.loaded.config, self.task, output_units, len(self.classes or []))
        if self.task == "regression":
            return "regression"
        family = loss_family(_loss_text(self._loss()) or "")
        if output_units == 1:
            return "binary"
        return family if family in ("onehot", "sparse") else "sparse"


def open_checkpoint(path: Path) -> Checkpoint:
    """CKPT -> the model file and its run's facts. Every problem is exit 2 with what was expected."""
    from mlcli.checkpoint.archive import locate, read_archive_config

    model_path, run_dir = locate(path, "CKPT")
    if run_dir is not None and not (run_dir / rundir.RUN).is_file():
        run_dir = None  # a config.yaml alone (a run that never started) says nothing about this file
    archive = read_archive_config(model_path, "CKPT")
    if run_dir is not None:
        ckpt = _run_checkpoint(model_path, run_dir)
    else:
        ckpt = _standalone_checkpoint(model_path, archive)
    ckpt.input_shape = _input_shape(archive)
    return ckpt


def _manifest(run_dir: Path) -> dict:
    path = run_dir / rundir.RUN
    if not path.is_file():
        return {}
    try:
        manifest = rundir.read_json(path)
    except (ValueError, OSError) as exc:
        raise UsageError(f"{path}: cannot be read ({first_line(exc)}) — the run directory is damaged") from None
    return manifest if isinstance(manifest, dict) else {}


def _run_checkpoint(model_path: Path, run_dir: Path) -> Checkpoint:
    loaded = load_config(run_dir / rundir.CONFIG)
    manifest = _manifest(run_dir)
    config = loaded.config
    task = manifest.get("task") or (config.data.task if config.data.task != "auto" else None)
    if task is None:
        from mlcli.data.labels import is_classification_loss

        task = "classification" if is_classification_loss(config) else "regression"
    features = manifest.get("features")
    if features is None and config.data.features is not None:
        features = [config.data.features] if isinstance(config.data.features, str) else list(config.data.features)
    labels = manifest.get("labels") or config.data.label_columns()
    classes = None
    if task == "classification":
        labels_file = run_dir / rundir.LABELS
        if labels_file.is_file():
            classes = rundir.read_json(labels_file)
        else:
            classes = manifest.get("classes")
        if not classes:
            raise UsageError(f"{run_dir}: a classification run without {rundir.LABELS} — "
                             "the run directory is incomplete")
    return Checkpoint(model_path, run_dir, task, features, list(labels), classes, loaded=loaded, manifest=manifest)


def _standalone_checkpoint(model_path: Path, archive: dict) -> Checkpoint:
    from mlcli.checkpoint.archive import read_archive_facts

    compile_config = archive.get("compile_config") or None
    facts = read_archive_facts(model_path)
    if facts is not None:  # saved by mlcli: its columns and labels travel inside the file
        return Checkpoint(
            model_path, None, facts["task"], facts["features"], list(facts["labels"]), facts["classes"],
            compile_config=compile_config,
            notes=[f"{model_path} is not inside a run directory: its input columns and labels come from the "
                   f"{rundir.ARCHIVE_FACTS} mlcli saved inside it"],
        )
    loss = _loss_text((compile_config or {}).get("loss"))
    if loss is not None:
        task = "classification" if loss_family(loss) else "regression"
    else:
        task = "classification" if _last_activation(archive) in ("softmax", "sigmoid") else "regression"
    return Checkpoint(
        model_path, None, task, None, [STANDALONE_LABEL], None, compile_config=compile_config,
        notes=[f"{model_path} is not inside a run directory: features are taken by position"
               + (", and predictions are class indices (no label vocabulary)" if task == "classification" else "")],
    )


def _input_shape(archive: dict) -> tuple[int, ...] | None:
    """The per-row input shape Keras recorded (build_config), or None when it is not plain."""
    shape = (archive.get("build_config") or {}).get("input_shape")
    if isinstance(shape, list) and len(shape) >= 2 and all(isinstance(d, int) and d > 0 for d in shape[1:]):
        return tuple(shape[1:])
    return None


def _loss_text(loss: Any) -> str | None:
    if loss is None:
        return None
    if isinstance(loss, str):
        return loss
    if isinstance(loss, dict):
        return str(loss.get("class_name") or (loss.get("config") or {}).get("name") or "")
    return getattr(loss, "type", None)


def _last_activation(archive: dict) -> str | None:
    layers = ((archive.get("config") or {}).get("layers")) or []
    for layer in reversed(layers):
        activation = (layer.get("config") or {}).get("activation")
        if activation:
            return activation if isinstance(activation, str) else None
    return None


def _metric_name(metric: Any) -> str:
    if isinstance(metric, str):
        return metric
    if isinstance(metric, dict):
        from mlcli.config.checks import snake_case

        return str((metric.get("config") or {}).get("name") or snake_case(str(metric.get("class_name", ""))))
    return str(metric)



# ---- with TensorFlow -------------------------------------------------------------------------

def load_model(ckpt: Checkpoint):
    """keras.saving.load_model (safe mode, not compiled); a standalone model's classes are set here."""
    from mlcli.runtime import import_tensorflow

    import_tensorflow()

    from mlcli.checkpoint.archive import load_keras

    model = load_keras(ckpt.model_path, compile=False)
    shape = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    if shape is None or any(d is None for d in shape):
        raise UsageError(f"CKPT {ckpt.model_path}: the model's input shape {model.input_shape} is not one fixed "
                         "row shape — evaluate and predict need a model with one input of a known size")
    ckpt.input_shape = tuple(int(d) for d in shape)
    units = int(np.prod(model.output_shape[1:]))
    if ckpt.task == "classification" and ckpt.classes is None:
        ckpt.classes = [0, 1] if units == 1 else list(range(units))
    return model


def compile_for_evaluation(model, ckpt: Checkpoint) -> None:
    """The run's own loss and metrics, so evaluate reports Keras's names and numbers as training did."""
    if ckpt.loaded is not None:
        from mlcli.model.build import build_loss, build_metrics

        model.compile(loss=build_loss(ckpt.loaded), metrics=build_metrics(ckpt.loaded))
        return
    recorded = ckpt.compile_config or {}
    if recorded.get("loss") is not None:
        loss, metrics = recorded["loss"], ckpt._standalone_metrics()
    elif ckpt.task == "classification":
        units = int(np.prod(model.output_shape[1:]))
        loss, metrics = ("binary_crossentropy" if units == 1 else "sparse_categorical_crossentropy"), ["accuracy"]
    else:
        loss, metrics = "mse", ["mae"]
    try:
        model.compile(loss=loss, metrics=metrics)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"CKPT {ckpt.model_path}: its recorded loss/metrics cannot be rebuilt: {first_line(exc)}"
        ) from None
