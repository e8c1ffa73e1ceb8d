"""A checkpoint and the run around it, rebuilt from the run's own files (a run directory describes itself: docs/ARCHITECTURE.md).

`evaluate`, `predict`, `export` and `finetune --from` start here: CKPT is a run directory (its
model.keras) or a .keras file. A .keras file inside a run directory (best.keras, state/...) uses its
run's config.yaml, labels.json and run.json; a standalone .keras file has no feature names, no label
vocabulary and no config, so those are taken from the archive: the mlcli.json mlcli saved inside it,
else its recorded loss and metrics, class indices 0..n-1 as labels, features by position.

A Checkpoint is a value: nothing changes it once `open_checkpoint` has built it. Loading the model
with Keras (mlcli.checkpoint.load) returns a new value with what only the model can tell.

Nothing here imports TensorFlow, so a bad CKPT or an unknown gate metric is reported before the
3-4 s TensorFlow start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcli.checkpoint import archive
from mlcli.config import LoadedConfig, load_config
from mlcli.config.checks import metric_base_names, snake_case
from mlcli.data.labels import is_classification_loss, label_encoding, loss_family
from mlcli.data.sources import sha256
from mlcli.errors import UsageError
from mlcli.run import files
from mlcli.run.diverged import restart_hint
from mlcli.run.manifest import feature_names, has_manifest, read_manifest, run_status, typed_features

STANDALONE_LABEL = "label"  # the label column `evaluate` reads for a standalone .keras file (.npz: y)
_DEFAULT_METRICS = {"classification": ["accuracy"], "regression": ["mae"]}


@dataclass(frozen=True)
class Checkpoint:
    model_path: Path  # the .keras file itself
    run_dir: Path | None  # the run it belongs to (a run.json beside it); None: a standalone .keras file
    architecture: dict  # the archive's config.json
    task: str  # classification | regression
    features: list[str] | None  # model input order; None: by position (standalone)
    labels: list[str]  # label column(s)
    classes: list | None  # the vocabulary in output order; None for a standalone file until it is loaded
    loaded: LoadedConfig | None = None  # the run's config.yaml
    compile_config: dict | None = None  # standalone: what the archive recorded
    manifest: dict = field(default_factory=dict)  # the run's run.json; {} for a standalone file
    notes: tuple[str, ...] = ()
    input_shape: tuple[int, ...] | None = None  # per row, from the archive (so inputs are checked before TF)
    typed: list[dict] | None = None  # typed features' records (run.json's features), in input order; None: plain
    inputs: dict | None = None  # image models: {kind: image, size, channels, ...} (docs/contract.md §7)

    @property
    def takes_images(self) -> bool:
        return bool(self.inputs) and self.inputs.get("kind") == "image"

    @property
    def input_known(self) -> bool:
        """Whether the input columns can be checked before the model is loaded."""
        return self.input_shape is not None or self.typed is not None

    @property
    def standalone(self) -> bool:
        return self.run_dir is None

    @property
    def config_path(self) -> Path | None:
        """The run's config.yaml, as written (finetune lays its CONFIG over it)."""
        return self.run_dir / files.CONFIG if self.run_dir is not None else None

    @property
    def is_sequential(self) -> bool:
        return self.architecture.get("class_name") == "Sequential"

    @property
    def layers(self) -> list[archive.ArchiveLayer]:
        """The layers as the user declared them: no input layer, no mlcli normalization."""
        return archive.declared_layers(self.architecture)


    @property
    def from_finetune(self) -> bool:
        """Whether the checkpoint's run was itself a finetune run (its run.json names a parent)."""
        return bool(self.manifest.get("parent"))

    def facts(self) -> dict:
        """What a finetune run's run.json records about its parent."""
        return {
            "path": str(self.model_path),
            "sha256": sha256(self.model_path),
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "config": str(self.config_path) if self.config_path else None,
        }

    def metric_names(self) -> list[str]:
        """The names Keras reports when evaluating (gates use them); no TensorFlow needed."""
        if self.loaded is not None:

            return metric_base_names(self.loaded.config)
        return ["loss"] + [_metric_name(m) for m in self.standalone_metrics()]

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

    def standalone_metrics(self) -> list:
        """A standalone file's metrics: those its archive recorded, else accuracy or mae."""
        recorded = (self.compile_config or {}).get("metrics")
        if self.compile_config and self.compile_config.get("loss") is not None:
            return list(recorded or [])
        return list(_DEFAULT_METRICS[self.task])

    def encoding(self, output_units: int) -> str:
        """How labels are fed to the loss: onehot | sparse | binary | regression (as training did)."""
        if self.loaded is not None:

            return label_encoding(self.loaded.config, self.task, output_units, len(self.classes or []))
        if self.task == "regression":
            return "regression"
        family = loss_family(_loss_text(self._loss()) or "")
        if output_units == 1:
            return "binary"
        return family if family in ("onehot", "sparse") else "sparse"


def open_checkpoint(path: Path, flag: str = "CKPT") -> Checkpoint:
    """CKPT -> the model file and its run's facts. Every problem is exit 2 with what was expected."""
    model_path, run_dir = locate(path, flag)
    if run_dir is not None and not has_manifest(run_dir):
        run_dir = None  # a config.yaml alone (a run that never started) says nothing about this file
    architecture = archive.read_archive_config(model_path, flag)
    if run_dir is not None:
        return _run_checkpoint(model_path, run_dir, architecture)
    return _standalone_checkpoint(model_path, architecture)


def locate(path: Path, flag: str) -> tuple[Path, Path | None]:
    """CKPT (docs/contract.md §1) -> (the .keras file, the run directory around it or None). Exit 2 otherwise.

    A run directory means its model.keras; a .keras file inside a run (DIR/best.keras,
    DIR/state/...) belongs to that run, whose files describe it.
    """
    if not path.exists():
        raise UsageError(f"{flag} {path}: not found — expected a run directory or a .keras file")
    if path.is_dir():
        if not files.is_run(path):
            raise UsageError(f"{flag} {path}: is not an mlcli run directory (no {files.RUN} or {files.CONFIG})",
                             hint="pass a directory written by `mlcli train`, or a .keras file")
        model = path / files.MODEL
        if not model.is_file():
            status = run_status(path)
            if status == "diverged":  # no epoch finished; --resume would diverge again
                hint = restart_hint(path)
            else:
                kind = "finetune" if status != "unknown" and read_manifest(path).get("parent") else "train"
                hint = f"finish it with `mlcli {kind} --resume {path}`"
            if (path / files.BEST).is_file():
                hint += f", or use its best checkpoint: {path / files.BEST}"
            raise UsageError(f"{flag} {path}: the run has no {files.MODEL} yet (status: {status})",
                             hint=hint)
        return model.resolve(), path.resolve()
    if path.suffix.lower() != ".keras":
        kind = path.suffix or "file without extension"
        raise UsageError(f"{flag} {path}: expected a run directory or a .keras file, not a {kind}")
    parent = path.resolve().parent
    for candidate in (parent, parent.parent if parent.name == files.STATE else None):
        if candidate is not None and (candidate / files.CONFIG).is_file():
            return path.resolve(), candidate
    return path.resolve(), None


def _run_checkpoint(model_path: Path, run_dir: Path, architecture: dict) -> Checkpoint:
    loaded = load_config(run_dir / files.CONFIG)
    manifest = read_manifest(run_dir)
    config = loaded.config
    task = manifest.get("task") or (config.data.task if config.data.task != "auto" else None)
    if task is None:

        task = "classification" if is_classification_loss(config) else "regression"
    typed = typed_features(manifest.get("features"))
    features = feature_names(manifest.get("features"))
    if features is None and config.data.features is not None:
        columns = config.data.feature_columns()
        features = [columns] if isinstance(columns, str) else list(columns)
    labels = manifest.get("labels") or config.data.label_columns()
    classes = None
    if task == "classification":
        labels_file = run_dir / files.LABELS
        if labels_file.is_file():
            classes = files.read_json(labels_file)
        else:
            classes = manifest.get("classes")
        if not classes:
            raise UsageError(f"{run_dir}: a classification run without {files.LABELS} — "
                             "the run directory is incomplete")
    return Checkpoint(model_path, run_dir, architecture, task, features, list(labels), classes, loaded=loaded,
                      manifest=manifest, input_shape=archive.input_shape(architecture), typed=typed,
                      inputs=manifest.get("inputs"))


def _standalone_checkpoint(model_path: Path, architecture: dict) -> Checkpoint:
    compile_config = architecture.get("compile_config") or None
    shape = archive.input_shape(architecture)
    facts = archive.read_archive_facts(model_path)
    if facts is not None:  # saved by mlcli: its columns and labels travel inside the file
        return Checkpoint(
            model_path, None, architecture, facts["task"], feature_names(facts["features"]), list(facts["labels"]),
            facts["classes"], compile_config=compile_config, input_shape=shape,
            typed=typed_features(facts["features"]),
            inputs=facts.get("inputs"),
            notes=(f"{model_path} is not inside a run directory: its input columns and labels come from the "
                   f"{archive.ARCHIVE_FACTS} mlcli saved inside it",),
        )
    loss = _loss_text((compile_config or {}).get("loss"))
    if loss is not None:
        task = "classification" if loss_family(loss) else "regression"
    else:
        task = "classification" if archive.last_activation(architecture) in ("softmax", "sigmoid") else "regression"
    return Checkpoint(
        model_path, None, architecture, task, None, [STANDALONE_LABEL], None, compile_config=compile_config,
        input_shape=shape,
        notes=(f"{model_path} is not inside a run directory: features are taken by position"
               + (", and predictions are class indices (no label vocabulary)" if task == "classification" else ""),),
    )


def _loss_text(loss: Any) -> str | None:
    if loss is None:
        return None
    if isinstance(loss, str):
        return loss
    if isinstance(loss, dict):
        return str(loss.get("class_name") or (loss.get("config") or {}).get("name") or "")
    return getattr(loss, "type", None)


def _metric_name(metric: Any) -> str:
    if isinstance(metric, str):
        return metric
    if isinstance(metric, dict):

        return str((metric.get("config") or {}).get("name") or snake_case(str(metric.get("class_name", ""))))
    return str(metric)
