"""`mlcli export`: a checkpoint as a SavedModel, TFLite or ONNX artifact that takes raw features
(the normalization is inside the model), checked against model.keras before it is put in place.

Order: every usage problem (the format's optional packages, the output path, CKPT) is reported
before TensorFlow is imported. The artifact is then written under a temporary name beside PATH,
loaded back with its own runtime and run on rows of the run's data; only when it computes what
model.keras computes is it renamed to PATH, with signature.json beside it. A failed check leaves
nothing behind.

The check: |exported - keras| <= tolerance * max(1, |keras|) for every output, tolerance 1e-5 by
default — an absolute 1e-5 for probabilities and other outputs up to 1, and 1e-5 relative beyond,
where float32 itself cannot resolve 1e-5 (its spacing near 150 is 1.5e-5).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlcli import __version__
from mlcli.checkpoint.checkpoint import Checkpoint, open_checkpoint
from mlcli.checkpoint.load import load_model
from mlcli.data.inputs import InputReader
from mlcli.data.sources import sha256
from mlcli.errors import DataError, UsageError, os_refusal, write_error
from mlcli.model.normalize import NORMALIZE_LAYER
from mlcli.run import files
from mlcli.runtime import import_tensorflow
from mlcli.use import export_formats as formats

FORMATS = ("savedmodel", "tflite", "onnx")
SIGNATURE = "signature.json"
TOLERANCE = 1e-5
PARITY_ROWS = 256
IMAGE_PARITY_ROWS = 32  # images: a few MB, and every one exercises every pixel path
_SUFFIX = {"tflite": ".tflite", "onnx": ".onnx"}


@dataclass
class ExportResult:
    format: str
    artifact: Path
    signature_path: Path
    signature: dict
    notes: list[str] = field(default_factory=list)

    def document(self) -> dict:
        """The --json document."""
        return {"format": self.format, "artifact": str(self.artifact), "signature": str(self.signature_path),
                "parity": self.signature["parity"]}


def export(checkpoint: Path, fmt: str, output: Path, *, tolerance: float = TOLERANCE,
           verbose: bool = False, unsafe: bool = False) -> ExportResult:
    """`unsafe` (--unsafe) lets Keras run Python code stored in the model file."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: unknown format — expected one of {', '.join(FORMATS)}")
    if not tolerance >= 0:
        raise UsageError(f"--tolerance {tolerance}: expected a number >= 0, e.g. 1e-5")
    formats.require_packages(fmt)
    output = Path(os.path.abspath(output))
    signature_path = check_output(fmt, output)
    ckpt = open_checkpoint(checkpoint)
    if ckpt.typed is not None:
        kinds = ", ".join(f"{f['name']} ({f['type']})" for f in ckpt.typed if f.get("type") != "numeric")
        kinds = kinds or "numbers that may be missing"
        raise UsageError(f"--format {fmt}: {ckpt.model_path} takes typed columns ({kinds}), and exporting a typed "
                         "model is not supported yet, in any format",
                         hint="use model.keras itself (keras.saving.load_model takes a dict of raw columns) or "
                              "mlcli predict")
    notes = list(ckpt.notes)


    import_tensorflow()
    model, ckpt = load_model(ckpt, unsafe=unsafe)
    x, rows_from = data_rows(ckpt, PARITY_ROWS, notes)
    if x is None:
        x, rows_from = synthetic_rows(model, PARITY_ROWS)
    reference = np.asarray(model(x, training=False)).reshape(len(x), -1)

    subject = f"--output {output}"
    with files.writing(subject):
        output.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    try:
        artifact = staging / output.name
        try:
            facts = formats.write(fmt, model, artifact, verbose)
        except Exception as exc:  # the converter's own error: this model does not fit the format
            refused = os_refusal(exc)
            if refused is not None:  # a full disk while the converter writes is not the converter's fault
                raise write_error(refused, subject) from exc
            text = str(exc).strip().splitlines()
            raise formats.ExportFailed(
                f"the {fmt} converter could not write {ckpt.model_path.name}: {type(exc).__name__}: "
                f"{text[0] if text else ''} — nothing was written",
                hint="--verbose shows the converter's log (MLCLI_DEBUG=1 the traceback); another --format may fit",
            ) from exc
        ran = formats.run(fmt, artifact, x, verbose)
        parity = compare(fmt, reference, ran.outputs, tolerance, rows_from)
        signature = build_signature(fmt, output, ckpt, model, ran, parity, facts)
        with files.writing(subject):
            # signature.json is written in the staging folder too: only renames, which need no space,
            # put the pair in place, so a full disk never leaves an artifact without its signature.
            staged_signature = (artifact if fmt == "savedmodel" else staging) / SIGNATURE
            staged_signature.write_text(files.json_text(signature), encoding="utf-8")
            if fmt == "savedmodel":
                _replace_directory(artifact, output)
            else:
                os.replace(artifact, output)
                os.replace(staged_signature, signature_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(fmt, output, signature_path, signature, notes)


def check_output(fmt: str, output: Path) -> Path:
    """The output path fits the format, can be written, and replaces nothing mlcli did not write;
    returns where signature.json goes (inside a SavedModel directory, beside a .tflite/.onnx file)."""
    files.check_writable_folder(output.parent, f"--output {output}")
    if fmt == "savedmodel":
        if output.is_file():
            raise UsageError(f"--output {output}: is a file — a SavedModel is a directory",
                             hint="name a new or empty directory, e.g. --output export/savedmodel")
        if output.is_dir() and any(output.iterdir()) and not (output / "saved_model.pb").is_file():
            raise UsageError(f"--output {output}: is a non-empty directory that holds no SavedModel",
                             hint="name a new or empty directory; mlcli never deletes files it did not write")
        return output / SIGNATURE
    suffix = _SUFFIX[fmt]
    if output.suffix.lower() != suffix:
        raise UsageError(f"--output {output}: --format {fmt} writes one file, named *{suffix}",
                         hint=f"e.g. --output export/model{suffix}")
    if output.is_dir():
        raise UsageError(f"--output {output}: is a directory — expected a file name ending in {suffix}")
    signature = output.parent / SIGNATURE
    if signature.exists():
        try:
            owner = files.read_json(signature).get("artifact")
        except (OSError, ValueError, AttributeError):
            owner = None
        if owner != output.name:
            described = f"describes {owner}" if owner else "was not written by mlcli export"
            raise UsageError(
                f"--output {output}: {signature} already {described}, and each artifact has its own signature.json",
                hint=f"export into another folder, e.g. --output {output.parent / fmt / output.name}",
            )
    return signature


def data_rows(ckpt: Checkpoint, count: int, notes: list[str]) -> tuple[np.ndarray | None, str | None]:
    """The first rows of the run's test data (else its training data), columns in model order."""
    if ckpt.loaded is None:
        return None, None
    data = ckpt.loaded.config.data
    role, spec = ("data.test", data.test) if data.test else ("data.train", data.train)
    if ckpt.takes_images:
        return _image_rows(ckpt, role, spec, count, notes)
    try:
        reader = InputReader(spec, role, features=ckpt.features, input_shape=ckpt.input_shape, labels=None,
                             batch_rows=count)
        batch = next(iter(reader.batches()), None)
    except DataError as exc:
        notes.append(f"the run's {role} cannot be read ({exc.message.splitlines()[0]}); the export check uses "
                     "rows drawn from the model's normalization statistics instead")
        return None, None
    if batch is None:
        return None, None
    x = batch.x[:count].astype(np.float32)
    return x, f"the first {len(x)} rows of {role} ({spec})"


def _image_rows(ckpt: Checkpoint, role: str, spec: str, count: int, notes: list[str]):
    """The first images of the run's test data (else its training data), decoded as the run decoded them."""
    from mlcli.data.image_inputs import ImageInputReader  # deferred: image listing only for image models

    try:
        reader = ImageInputReader.open(spec, ckpt.inputs, IMAGE_PARITY_ROWS, role)
        batch = next(iter(reader.batches()), None)
    except DataError as exc:
        notes.append(f"the run's {role} cannot be read ({exc.message.splitlines()[0]}); the export check uses "
                     "random pixels instead")
        return None, None
    if batch is None:
        return None, None
    return batch.x, f"the first {batch.rows} images of {role} ({spec})"


def synthetic_rows(model, count: int) -> tuple[np.ndarray, str]:
    """Rows drawn (seeded) around the mean and spread the model's normalization was fitted on, or
    from N(0, 1) when it has none: for a .keras file without its run's data."""
    shape = (count, *tuple(int(d) for d in model.input_shape[1:]))
    if len(shape) == 4:  # an image model: pixels in [0, 255] (mlcli.model.image_input)
        count = min(count, IMAGE_PARITY_ROWS)
        pixels = np.random.default_rng(0).uniform(0, 255, (count, *shape[1:])).astype(np.float32)
        return pixels, f"{count} images of uniform random pixels in [0, 255] (no run data available)"
    noise = np.random.default_rng(0).standard_normal(shape)
    layer = next((layer for layer in model.layers if layer.name == NORMALIZE_LAYER), None)
    if layer is None:
        return noise.astype(np.float32), f"{count} rows drawn from N(0, 1) (no data and no normalization layer)"
    mean = np.asarray(layer.mean, dtype=np.float64)
    spread = np.sqrt(np.asarray(layer.variance, dtype=np.float64))
    x = (mean + spread * noise).astype(np.float32)
    return x, f"{count} rows drawn from the model's normalization statistics (no run data available)"


def compare(fmt: str, reference: np.ndarray, outputs: np.ndarray, tolerance: float, rows_from: str) -> dict:
    """Parity figures; ExportCheckFailed (exit 1) with the largest difference when over tolerance."""
    reference = reference.astype(np.float64).reshape(len(reference), -1)
    if outputs.size != reference.size:
        raise formats.ExportCheckFailed(
            f"the {fmt} artifact returns outputs of shape {outputs.shape}, model.keras {reference.shape} — "
            "the artifact was not written")
    outputs = outputs.astype(np.float64).reshape(reference.shape)
    if not np.isfinite(outputs).all():
        raise formats.ExportCheckFailed(f"the {fmt} artifact returns NaN or inf on {rows_from} — "
                                        "the artifact was not written")
    diff = np.abs(outputs - reference)
    scale = np.maximum(1.0, np.abs(reference))
    row, column = np.unravel_index(int(np.argmax(diff)), diff.shape)
    largest = float(diff[row, column])
    relative = float((diff / scale).max())
    if (diff > tolerance * scale).any():
        raise formats.ExportCheckFailed(
            f"the {fmt} artifact differs from model.keras by up to {largest:.3g} on {rows_from} (row {row}, "
            f"output {column}: {outputs[row, column]:.9g} vs {reference[row, column]:.9g}), more than the "
            f"{tolerance:g} allowed (scaled by |value| above 1) — the artifact was not written",
            hint="the converter changed the computation; --verbose shows its log. "
                 "--tolerance raises the limit if this difference is acceptable",
        )
    return {"rows": len(reference), "rows_from": rows_from, "max_abs_diff": largest,
            "max_rel_diff": relative, "tolerance": tolerance,
            "rule": "|exported - keras| <= tolerance * max(1, |keras|)"}


def build_signature(fmt: str, output: Path, ckpt: Checkpoint, model, ran, parity: dict, facts: dict) -> dict:
    units = int(np.prod(model.output_shape[1:]))
    if ckpt.task == "classification":
        kind = "logits" if ckpt.from_logits() else "probabilities"
        meaning = (f"{kind[:-1] if kind == 'logits' else 'probability'} of classes[1]" if units == 1
                   else f"{kind}, one per class in `classes` order")
    else:
        meaning = "predicted values, one per target in `targets` order"
    versions = {"mlcli": __version__, "python": platform.python_version()}
    packages = ["tensorflow", "keras", "numpy"] + [module for module, _ in formats.OPTIONAL.get(fmt, [])]
    versions.update({name: formats.version(name) for name in packages})
    versions["runtime"] = ran.runtime
    versions.update(facts)
    return {
        "format": fmt,
        "artifact": output.name,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": {"path": str(ckpt.model_path), "sha256": sha256(Path(ckpt.model_path)),
                       "run_dir": str(ckpt.run_dir) if ckpt.run_dir else None},
        "task": ckpt.task,
        "input": _input_facts(ckpt, model, ran),
        "output": {
            "name": ran.output_name, "dtype": "float32", "shape": [None, units], "meaning": meaning,
            "classes": ckpt.classes if ckpt.task == "classification" else None,
            "targets": ckpt.labels if ckpt.task != "classification" else None,
        },
        "parity": parity,
        "versions": versions,
    }


def _input_facts(ckpt: Checkpoint, model, ran) -> dict:
    facts = {"name": ran.input_name, "dtype": "float32", "shape": [None, *[int(d) for d in model.input_shape[1:]]],
             "columns": ckpt.features}
    if ckpt.takes_images:
        crop = "cropped to the aspect ratio, then " if ckpt.inputs.get("crop_to_aspect_ratio") else ""
        facts["image"] = ckpt.inputs
        facts["preprocessing"] = (f"decode the image to {ckpt.inputs['channels']} channel(s), {crop}resize it "
                                  f"(bilinear) to {ckpt.inputs['size'][0]}x{ckpt.inputs['size'][1]}; pass float32 "
                                  "pixels in [0, 255] — the scaling is inside the model")
    elif ckpt.features:
        facts["preprocessing"] = ("none: the normalization is inside the model; pass raw feature values, columns in "
                                  "this order")
    else:
        facts["preprocessing"] = ("none: the normalization is inside the model; pass raw feature values in training "
                                  "order (a .keras file records no column names)")
    return facts


def _replace_directory(new: Path, output: Path) -> None:
    """Put the checked SavedModel directory at `output`; an old SavedModel there is replaced."""
    if output.is_dir() and any(output.iterdir()):
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        os.rename(output, old)
        os.rename(new, output)
        shutil.rmtree(old, ignore_errors=True)
        return
    if output.is_dir():
        output.rmdir()
    os.rename(new, output)
