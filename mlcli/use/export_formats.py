"""Each export format: how the artifact is written, and how its own runtime runs it.

Writing goes through Keras's own `model.export` (`tf_saved_model`, `litert`). ONNX is the one
exception: Keras's ONNX export hands tf2onnx a traced function in which the Normalization layer's
mean and variance are captured tensors, and tf2onnx turns those into two extra required graph
inputs, so the artifact would not take raw features alone. mlcli therefore converts the SavedModel
that Keras exported, through tf2onnx's saved-model loader (what `python -m tf2onnx.convert
--saved-model` does), which freezes every captured value into the graph.

Running uses the runtime a consumer of the format uses: TensorFlow's SavedModel loader and its
serving signature, the TFLite interpreter, onnxruntime. Nothing here is imported before a command
needs it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlcli import runtime
from mlcli.errors import MlcliError, UsageError

SERVING_SIGNATURE = "serving_default"

# Optional packages per format: (import name, the requirement to install).
OPTIONAL = {
    "onnx": [("tf2onnx", "tf2onnx>=1.17,<2"), ("onnx", "onnx>=1.17,<2"), ("onnxruntime", "onnxruntime>=1.20,<2")],
}


class ExportFailed(MlcliError):
    """The converter could not write the format (exit 1: nothing was written)."""

    exit_code = 1
    kind = "export failed"


class ExportCheckFailed(ExportFailed):
    """The exported artifact does not compute what model.keras computes (exit 1: nothing was written)."""

    kind = "export check failed"


@dataclass
class Ran:
    """An artifact's outputs on the parity rows, and what its runtime calls the tensors."""

    outputs: np.ndarray
    input_name: str
    output_name: str
    runtime: str  # e.g. "onnxruntime 1.32.0"


def require_packages(fmt: str) -> None:
    """Exit 2 with the exact pip line when a format's optional packages are not installed."""
    missing = []
    for module, requirement in OPTIONAL.get(fmt, []):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append((module, requirement))
    if missing:
        names = " and ".join(module for module, _ in missing)
        line = "pip install " + " ".join(f"'{requirement}'" for _, requirement in missing)
        raise UsageError(
            f"--format {fmt} needs {names}, which {'is' if len(missing) == 1 else 'are'} not installed",
            hint=f"install {'it' if len(missing) == 1 else 'them'} with: {line}",
        )


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


@contextlib.contextmanager
def quiet_converters(verbose: bool):
    """Converters log at INFO/WARNING through Python logging, warnings and fd 2; show that only with
    --verbose (or when the block fails: quiet_native_stderr replays what it held back)."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("tf2onnx", "absl", "tensorflow")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), runtime.quiet_native_stderr():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


# ---- writing ---------------------------------------------------------------------------------

def write(fmt: str, model, path: Path, verbose: bool = False, date_inputs: list[str] = ()) -> dict:
    """Write `model` as `fmt` at `path` (a new directory for savedmodel, a file otherwise).
    Returns facts for signature.json (the ONNX opset). `date_inputs`: a typed model's date inputs that
    the SavedModel takes as ISO date text (parsed inside it) instead of their four parts."""
    with quiet_converters(verbose):
        if fmt == "savedmodel" and date_inputs:
            _write_savedmodel_with_dates(model, path, list(date_inputs))
            return {}
        if fmt == "savedmodel":
            model.export(str(path), format="tf_saved_model", verbose=False)
            return {}
        if fmt == "tflite":
            model.export(str(path), format="litert", verbose=False)
            return {}
        return _write_onnx(model, path)


def _write_savedmodel_with_dates(model, path: Path, date_inputs: list[str]) -> None:
    """A typed model's SavedModel whose serving signature takes each date input as text (rows, 1):
    an ISO date (2024-01-31, a time after it ignored; "" when missing), turned into the year, month,
    day and day of week the model takes — the parts mlcli.data.typed_values computes."""
    import tensorflow as tf  # deferred: imports TensorFlow
    from keras.export import ExportArchive  # deferred: imports TensorFlow

    specs = {}
    for tensor in model.inputs:
        name = tensor.name
        if name in date_inputs:
            specs[name] = tf.TensorSpec((None, 1), tf.string, name=name)
        else:
            specs[name] = tf.TensorSpec(tuple(tensor.shape), tensor.dtype, name=name)

    def serve(inputs):
        converted = {name: date_parts(tf, value) if name in date_inputs else value for name, value in inputs.items()}
        return model(converted, training=False)

    archive = ExportArchive()
    archive.track(model)
    archive.add_endpoint(SERVING_SIGNATURE, serve, input_signature=[specs])
    archive.write_out(str(path), verbose=False)


def date_parts(tf, text):
    """ISO date text (rows, 1) -> float32 (rows, 4): year, month, day, day of week (Monday 0); a row
    without a date (blank) is NaN, as mlcli.data.typed_values reads a missing date."""
    text = tf.strings.strip(text[:, 0])
    present = tf.strings.length(text) >= 10
    text = tf.where(present, text, tf.fill(tf.shape(text), "2000-01-01"))

    def part(start, length):
        return tf.strings.to_number(tf.strings.substr(text, start, length), tf.int32)

    year, month, day = part(0, 4), part(5, 2), part(8, 2)
    # Sakamoto's method: 0 is Sunday; Python's weekday() (and Arrow's day_of_week) make Monday 0
    offsets = tf.constant([0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4], tf.int32)
    shifted = year - tf.cast(month < 3, tf.int32)
    sunday_first = (shifted + shifted // 4 - shifted // 100 + shifted // 400 + tf.gather(offsets, month - 1) + day) % 7
    weekday = (sunday_first + 6) % 7
    parts = tf.cast(tf.stack([year, month, day, weekday], axis=1), tf.float32)
    return tf.where(present[:, None], parts, tf.fill(tf.shape(parts), float("nan")))


def _write_onnx(model, path: Path) -> dict:
    import tf2onnx  # deferred: imports tf2onnx
    from tf2onnx import tf_loader  # deferred: imports tf2onnx

    try:  # Keras's own numpy-2 patches for tf2onnx (np.object, np.cast), as its ONNX export applies them
        from keras.src.export.tf2onnx_lib import patch_tf2onnx  # deferred: imports TensorFlow

        patch_tf2onnx()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix=".mlcli-savedmodel-", dir=path.parent) as folder:
        saved = Path(folder) / "savedmodel"
        model.export(str(saved), format="tf_saved_model", verbose=False)
        graph_def, inputs, outputs, renames = tf_loader.from_saved_model(
            str(saved), None, None, tag="serve", signatures=[SERVING_SIGNATURE], return_tensors_to_rename=True,
        )
        proto, _ = tf2onnx.convert.from_graph_def(
            graph_def, name=model.name, input_names=inputs, output_names=outputs, tensors_to_rename=renames,
            output_path=str(path),
        )
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"opset": opset}


# ---- running ---------------------------------------------------------------------------------

def run(fmt: str, path: Path, x, verbose: bool = False) -> Ran:
    """Load the artifact with its own runtime and run it on `x` (a typed model's: {input name: values})."""
    with quiet_converters(verbose):
        if fmt == "savedmodel":
            return _run_savedmodel(path, x)
        if fmt == "tflite":
            return _run_tflite(path, x)
        return _run_onnx(path, x)


def _run_savedmodel(path: Path, x) -> Ran:
    import tensorflow as tf  # deferred: imports TensorFlow

    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures[SERVING_SIGNATURE]
    if isinstance(x, dict):
        input_name = ", ".join(serve.structured_input_signature[1])
        result = serve(**{name: tf.constant(values) for name, values in x.items()})
    else:
        (input_name,) = serve.structured_input_signature[1].keys()
        result = serve(**{input_name: tf.constant(x)})
    (output_name,) = result.keys()
    return Ran(np.asarray(result[output_name]), input_name, output_name, f"tensorflow {tf.__version__}")


def _tflite_interpreter(path: Path):
    """LiteRT's interpreter when its package is installed; else TensorFlow's own tf.lite.Interpreter
    (deprecated in favour of ai-edge-litert, still shipped with TensorFlow 2.21)."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # deferred: an optional package, for TFLite only

        return Interpreter(model_path=str(path)), f"ai-edge-litert {version('ai-edge-litert')}"
    except ImportError:
        import tensorflow as tf  # deferred: imports TensorFlow

        return tf.lite.Interpreter(model_path=str(path)), f"tensorflow.lite {tf.__version__}"


def _run_tflite(path: Path, x) -> Ran:
    interpreter, name = _tflite_interpreter(path)
    if isinstance(x, dict):  # several named inputs: through the serving signature
        runner = interpreter.get_signature_runner(SERVING_SIGNATURE)
        result = runner(**{key: values.astype(np.float32) for key, values in x.items()})
        (output_name,) = result.keys()
        return Ran(np.array(result[output_name]), ", ".join(x), output_name, name)
    (source,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(source["index"], list(x.shape))  # the batch dimension is dynamic
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], x.astype(source["dtype"]))
    interpreter.invoke()
    (target,) = interpreter.get_output_details()
    outputs = np.array(interpreter.get_tensor(target["index"]))  # a copy: the buffer is the interpreter's
    return Ran(outputs, source["name"], target["name"], name)


def _run_onnx(path: Path, x) -> Ran:
    import onnxruntime  # deferred: imports onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if isinstance(x, dict):
        names = sorted(i.name for i in inputs)
        if names != sorted(x):
            raise ExportCheckFailed(f"the ONNX graph takes inputs {', '.join(names)}, not the model's columns "
                                    f"{', '.join(x)} — the artifact was not written")
        (result,) = session.run([outputs[0].name], {key: values.astype(np.float32) for key, values in x.items()})
        return Ran(np.asarray(result), ", ".join(x), outputs[0].name, f"onnxruntime {onnxruntime.__version__}")
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ExportCheckFailed(f"the ONNX graph takes {len(inputs)} inputs ({names}) instead of the features "
                                "alone, so it cannot be called with raw features — the artifact was not written")
    (result,) = session.run([outputs[0].name], {inputs[0].name: x})
    return Ran(np.asarray(result), inputs[0].name, outputs[0].name, f"onnxruntime {onnxruntime.__version__}")
