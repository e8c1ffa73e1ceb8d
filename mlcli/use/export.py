"""`mlcli export`: a checkpoint as a SavedModel, TFLite or ONNX artifact that takes raw features
(the normalization is inside the model), checked against model.keras before it is put in place.

A typed model (mlcli.model.features) takes one named input per column: a SavedModel takes text
columns as tf.string and dates as ISO text; TFLite and ONNX take numbers and dates (four parts) only —
a model that looks text up is exit 2 naming the columns (see refuse_text_columns).

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
from mlcli.checkpoint.checkpoint import Checkpoint, checkpoint_dialect, open_checkpoint
from mlcli.checkpoint.load import load_model
from mlcli.data.formats.csv import use_dialect
from mlcli.data.inputs import InputReader
from mlcli.data.sources import sha256
from mlcli.data.typed_values import row_count, take_rows
from mlcli.errors import DataError, UsageError, os_refusal, write_error
from mlcli.model.features import input_name
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


def export(checkpoint: Path, *args, **kwargs) -> ExportResult:
    """The parity rows (data.test) are read in the run's CSV dialect (data.csv), then _export."""
    with use_dialect(checkpoint_dialect(checkpoint)):
        return _export(checkpoint, *args, **kwargs)


def _export(checkpoint: Path, fmt: str, output: Path, *, tolerance: float = TOLERANCE,
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
        refuse_text_columns(fmt, ckpt)
    notes = list(ckpt.notes)

    import_tensorflow()
    model, ckpt = load_model(ckpt, unsafe=unsafe)
    x, rows_from = data_rows(ckpt, PARITY_ROWS, notes)
    if x is None and ckpt.typed is not None:
        raise UsageError(f"--format {fmt}: the export check runs {ckpt.model_path} on rows of its run's data, and "
                         "there are none to read", hint="export from the run directory, with its data in place")
    if x is None:
        x, rows_from = synthetic_rows(model, PARITY_ROWS)
    reference = np.asarray(model(x, training=False)).reshape(row_count(x), -1)
    dates = iso_date_inputs(ckpt) if fmt == "savedmodel" else []
    exported_x = x if ckpt.typed is None else typed_inputs(ckpt, x, dates)

    subject = f"--output {output}"
    with files.writing(subject):
        output.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    try:
        artifact = staging / output.name
        try:
            facts = formats.write(fmt, model, artifact, verbose, [input_name(c) for c in dates])
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
        ran = formats.run(fmt, artifact, exported_x, verbose)
        parity = compare(fmt, reference, ran.outputs, tolerance, rows_from)
        signature = build_signature(fmt, output, ckpt, model, ran, parity, facts, dates)
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


# ---- typed models (mlcli.model.features): a named input per column ------------------------------

_TEXT_TYPES = ("categorical", "binary", "text")


def refuse_text_columns(fmt: str, ckpt: Checkpoint) -> None:
    """TFLite's builtin runtime and onnxruntime have no string lookups (StringLookup, TextVectorization
    convert only to TensorFlow ops: a Flex delegate, an unsupported HashTableV2): exit 2 naming the
    columns; numbers and dates only (Normalization, a median fill, a was-missing column) convert."""
    if fmt == "savedmodel":
        return
    columns = [f for f in ckpt.typed if f.get("type") in _TEXT_TYPES]
    if columns:
        named = ", ".join(f"{f['name']} ({f['type']})" for f in columns)
        runtime = "TFLite's builtin ops" if fmt == "tflite" else "onnxruntime"
        raise UsageError(f"--format {fmt}: {ckpt.model_path} looks up text columns inside the model — {named} — "
                         f"with TensorFlow string ops that {runtime} cannot run",
                         hint="--format savedmodel takes them (a tf.string input per column); numbers and dates "
                              f"only would export to {fmt}")


def iso_date_inputs(ckpt: Checkpoint) -> list[str]:
    """The date columns the SavedModel takes as ISO text: those without a format: (whose parts it
    cannot parse in the graph: it takes their four parts)."""
    return [f["name"] for f in ckpt.typed or [] if f.get("type") == "date" and not (f.get("options") or {}).get("format")]


def typed_inputs(ckpt: Checkpoint, x: dict, dates: list[str]) -> dict:
    """The artifact's inputs for the parity rows: by the model's input names, each date in `dates` as
    the ISO text of its parts (a missing one "")."""
    out = {}
    for name, values in x.items():
        if name in dates:
            values = np.asarray(["" if np.isnan(row[0]) else "%04d-%02d-%02d" % tuple(int(v) for v in row[:3])
                                 for row in values], dtype=object).reshape(-1, 1)
        out[input_name(name)] = values
    return out


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
                             batch_rows=count, typed=ckpt.typed)
        batch = next(iter(reader.batches()), None)
    except DataError as exc:
        notes.append(f"the run's {role} cannot be read ({exc.message.splitlines()[0]}); the export check uses "
                     "rows drawn from the model's normalization statistics instead")
        return None, None
    if batch is None:
        return None, None
    if isinstance(batch.x, dict):  # typed: raw columns as the model takes them
        x = take_rows(batch.x, slice(0, count))
    else:
        x = batch.x[:count].astype(np.float32)
    return x, f"the first {row_count(x)} rows of {role} ({spec})"


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


def build_signature(fmt: str, output: Path, ckpt: Checkpoint, model, ran, parity: dict, facts: dict,
                    dates: list[str] = ()) -> dict:
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
        "input": _typed_input(ckpt, dates) if ckpt.typed is not None else _input_facts(ckpt, model, ran),
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


def _typed_input(ckpt: Checkpoint, dates: list[str]) -> dict:
    """A typed model's inputs: one per column, by name."""
    columns = []
    for feature in ckpt.typed:
        kind = feature["type"]
        if kind in _TEXT_TYPES or feature["name"] in dates:
            dtype, shape = "string", [None, 1]
            takes = "ISO date text (2024-01-31), \"\" when missing" if kind == "date" else \
                "the value as text, \"\" when missing"
        elif kind == "date":
            dtype, shape, takes = "float32", [None, 4], "year, month, day, day of week (Monday 0); NaN when missing"
        else:
            dtype, shape, takes = "float32", [None, 1], "the number; NaN when missing"
        columns.append({"column": feature["name"], "name": input_name(feature["name"]), "type": kind,
                        "dtype": dtype, "shape": shape, "takes": takes})
    return {"columns": columns,
            "preprocessing": "none: vocabularies, statistics and missing-value fills are inside the model; pass raw "
                             "column values, one named input per column"}


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
