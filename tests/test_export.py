"""`mlcli export`: every format round-trips through its own runtime with the parity check, takes raw
features (the normalization is inside), and every user error is an exit code and a message.

A format is skipped only when its optional package is absent; the `dev` extra installs them all,
and a skip that tests/conftest.py does not expect fails the test run."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, REPO, run_cli
from evalpredict_runs import plain_keras_copy

pytestmark = [pytest.mark.slow,
              # the tests read TFLite files with TensorFlow's own interpreter, as a consumer without LiteRT would
              pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")]

DIGITS_TEST = REPO / "mlcli" / "datasets" / "digits_test.csv.gz"
DIABETES_TEST = REPO / "mlcli" / "datasets" / "diabetes_test.csv.gz"
FORMATS = ["savedmodel", "tflite", "onnx"]
_runs: dict[str, Path] = {}


def _train(name: str, tmp_path_factory, *args) -> Path:
    if name not in _runs:
        run_dir = tmp_path_factory.mktemp(f"export-{name}") / "run"
        ran = run_cli("train", *map(str, args), "--output", run_dir, "--quiet")
        assert ran.exit_code == 0, ran
        _runs[name] = run_dir
    return _runs[name]


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return _train("digits", tmp_path_factory, CONFIGS / "tiny.yaml")


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory) -> Path:
    return _train("diabetes", tmp_path_factory, CONFIGS / "diabetes.yaml", "--set", "training.epochs=2")


def _needs(fmt: str) -> None:
    if fmt == "onnx":
        pytest.importorskip("tf2onnx")
        pytest.importorskip("onnxruntime")


def _target(tmp_path: Path, fmt: str) -> Path:
    return tmp_path / {"savedmodel": "savedmodel", "tflite": "tflite/model.tflite", "onnx": "onnx/model.onnx"}[fmt]


def _raw_rows(path: Path, columns: list[str], rows: int = 64) -> np.ndarray:
    import pyarrow.csv as pv

    table = pv.read_csv(path)
    return np.stack([table.column(c).to_numpy()[:rows] for c in columns], axis=1).astype(np.float32)


def _run_artifact(fmt: str, path: Path, x: np.ndarray) -> np.ndarray:
    """The artifact on raw rows, through the runtime a consumer would use (not mlcli's code)."""
    if fmt == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        return next(iter(serve(features=tf.constant(x)).values())).numpy()
    if fmt == "tflite":
        import tensorflow as tf

        interpreter = tf.lite.Interpreter(model_path=str(path))
        (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
        interpreter.resize_tensor_input(source["index"], list(x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(target["index"]).copy()
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["features"]  # raw features and nothing else
    return session.run(None, {"features": x})[0]


def _keras(run_dir: Path, x: np.ndarray) -> np.ndarray:
    import keras

    return np.asarray(keras.saving.load_model(run_dir / "model.keras", compile=False)(x, training=False))


@pytest.mark.parametrize("fmt", FORMATS)
def test_classification_export_round_trips(fmt, digits, tmp_path):
    _needs(fmt)
    output = _target(tmp_path, fmt)
    ran = run_cli("export", digits, "--format", fmt, "--output", output)
    assert ran.exit_code == 0, ran
    assert ran.stdout == ""
    assert "matches model.keras on the first 256 rows of data.test (builtin:digits/test)" in ran.stderr, ran
    assert output.exists()
    signature_path = output / "signature.json" if fmt == "savedmodel" else output.parent / "signature.json"
    signature = json.loads(signature_path.read_text())
    manifest = json.loads((digits / "run.json").read_text())
    assert signature["format"] == fmt and signature["artifact"] == output.name
    assert signature["input"]["columns"] == manifest["features"]
    assert signature["input"]["shape"] == [None, 64]
    assert signature["output"]["classes"] == json.loads((digits / "labels.json").read_text())
    assert signature["output"]["shape"] == [None, 10]
    assert signature["task"] == "classification"
    parity = signature["parity"]
    assert parity["rows"] == 256 and parity["tolerance"] == 1e-5
    assert 0 <= parity["max_abs_diff"] <= 1e-5
    for package in ("mlcli", "python", "tensorflow", "keras", "numpy", "runtime"):
        assert signature["versions"][package], package
    if fmt == "onnx":
        assert signature["versions"]["tf2onnx"] and signature["versions"]["onnxruntime"]
        assert isinstance(signature["versions"]["opset"], int)
    # Raw pixel values in, the model's probabilities out: the normalization travelled with it.
    x = _raw_rows(DIGITS_TEST, manifest["features"])
    outputs = _run_artifact(fmt, output, x)
    np.testing.assert_allclose(outputs, _keras(digits, x), atol=1e-5, rtol=0)
    assert not list(output.parent.glob(".*.tmp")), "the staging folder was left behind"


@pytest.mark.parametrize("fmt", FORMATS)
def test_regression_export_round_trips_with_the_scaled_tolerance(fmt, diabetes, tmp_path):
    _needs(fmt)
    output = _target(tmp_path, fmt)
    ran = run_cli("export", diabetes, "--format", fmt, "--output", output, "--json")
    assert ran.exit_code == 0, ran
    document = json.loads(ran.stdout)
    assert document["format"] == fmt and Path(document["artifact"]) == output
    parity = document["parity"]
    assert parity["rows"] == 88  # the whole of builtin:diabetes/test
    assert parity["max_rel_diff"] <= 1e-5
    signature = json.loads(Path(document["signature"]).read_text())
    assert signature["output"]["targets"] == ["target"] and signature["output"]["classes"] is None
    x = _raw_rows(DIABETES_TEST, signature["input"]["columns"])
    reference = _keras(diabetes, x)
    np.testing.assert_allclose(_run_artifact(fmt, output, x), reference, rtol=1e-5, atol=1e-5)


def test_exporting_again_replaces_the_savedmodel(digits, tmp_path):
    output = tmp_path / "sm"
    for _ in range(2):
        ran = run_cli("export", digits, "--format", "savedmodel", "--output", output, "--quiet")
        assert ran.exit_code == 0, ran
        assert ran.stderr == ""
    assert sorted(p.name for p in output.iterdir()) == ["assets", "fingerprint.pb", "saved_model.pb",
                                                        "signature.json", "variables"]
    assert [p.name for p in tmp_path.iterdir()] == ["sm"]


def test_a_parity_failure_is_exit_1_with_the_largest_difference_and_writes_nothing(digits, tmp_path, monkeypatch):
    from mlcli.use import export_formats

    real_run = export_formats.run

    def drifting(fmt, path, x, verbose=False):
        ran = real_run(fmt, path, x, verbose)
        ran.outputs = ran.outputs.copy()
        ran.outputs[3, 2] += 2.5e-4  # what a converter that changed the computation would return
        return ran

    monkeypatch.setattr(export_formats, "run", drifting)
    output = tmp_path / "out" / "model.tflite"
    ran = run_cli("export", digits, "--format", "tflite", "--output", output)
    assert ran.exit_code == 1, ran
    assert ran.exception is None and "Traceback" not in ran.stderr
    assert "export check failed: the tflite artifact differs from model.keras by up to 0.00025" in ran.stderr
    assert "(row 3, output 2:" in ran.stderr and "more than the 1e-05 allowed" in ran.stderr
    assert "the artifact was not written" in ran.stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_tolerance_zero_fails_on_any_difference(digits, tmp_path, monkeypatch):
    # One output one float32 step off: far inside the default tolerance, refused by --tolerance 0.
    # (Planted, not left to a converter: whether a real one rounds differently depends on its build.)
    from mlcli.use import export_formats

    real_run = export_formats.run

    def one_step_off(fmt, path, x, verbose=False):
        ran = real_run(fmt, path, x, verbose)
        ran.outputs = ran.outputs.copy()
        ran.outputs[3, 2] = np.nextafter(ran.outputs[3, 2], np.float32(2))
        return ran

    monkeypatch.setattr(export_formats, "run", one_step_off)
    output = tmp_path / "out" / "sm"
    ran = run_cli("export", digits, "--format", "savedmodel", "--output", output, "--tolerance", "0")
    assert ran.exit_code == 1, ran
    assert "(row 3, output 2:" in ran.stderr and "more than the 0 allowed" in ran.stderr
    assert list((tmp_path / "out").iterdir()) == []
    ran = run_cli("export", digits, "--format", "savedmodel", "--output", output, "--json")
    assert ran.exit_code == 0, ran
    assert 0 < json.loads(ran.stdout)["parity"]["max_abs_diff"] < 1e-6


def test_missing_onnx_packages_are_exit_2_with_the_pip_line(digits, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # what an uninstalled package looks like to import
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    ran = run_cli("export", digits, "--format", "onnx", "--output", tmp_path / "model.onnx")
    assert ran.exit_code == 2, ran
    assert ran.exception is None and "Traceback" not in ran.stderr
    assert "--format onnx needs tf2onnx and onnxruntime, which are not installed" in ran.stderr
    assert "pip install 'tf2onnx>=1.17,<2' 'onnxruntime>=1.20,<2'" in ran.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--format", "pdf", "--output", "OUT/model.pdf"], "--format pdf: unknown format — expected one of savedmodel, tflite, onnx"),
    (["--format", "onnx", "--output", "OUT/model.tflite"], "--format onnx writes one file, named *.onnx"),
    (["--format", "tflite", "--output", "OUT/model"], "--format tflite writes one file, named *.tflite"),
    (["--format", "tflite", "--output", "OUT/model.tflite", "--tolerance", "-1"], "--tolerance -1.0: expected a number >= 0"),
], ids=["unknown-format", "onnx-suffix", "tflite-suffix", "negative-tolerance"])
def test_usage_errors(digits, tmp_path, args, message):
    args = [a.replace("OUT", str(tmp_path)) for a in args]
    ran = run_cli("export", digits, *args)
    assert ran.exit_code == 2, ran
    assert message in ran.stderr, ran
    assert ran.exception is None and "Traceback" not in ran.stderr
    assert list(tmp_path.iterdir()) == []


def test_missing_output_flag_is_a_usage_error(digits):
    ran = run_cli("export", digits, "--format", "tflite")
    assert ran.exit_code == 2, ran
    assert "--output" in ran.stderr


def test_a_checkpoint_that_does_not_exist(tmp_path):
    ran = run_cli("export", tmp_path / "nope", "--format", "tflite", "--output", tmp_path / "m.tflite")
    assert ran.exit_code == 2, ran
    assert "nope: not found — expected a run directory or a .keras file" in ran.stderr
    assert ran.exception is None


def test_a_savedmodel_never_replaces_a_folder_it_did_not_write(digits, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    ran = run_cli("export", digits, "--format", "savedmodel", "--output", folder)
    assert ran.exit_code == 2, ran
    assert "is a non-empty directory that holds no SavedModel" in ran.stderr
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    ran = run_cli("export", digits, "--format", "savedmodel", "--output", tmp_path / "file")
    assert ran.exit_code == 2 and "is a file — a SavedModel is a directory" in ran.stderr, ran


def test_a_file_format_output_that_is_a_directory(digits, tmp_path):
    (tmp_path / "m.tflite").mkdir()
    ran = run_cli("export", digits, "--format", "tflite", "--output", tmp_path / "m.tflite")
    assert ran.exit_code == 2, ran
    assert "is a directory — expected a file name ending in .tflite" in ran.stderr


def test_each_artifact_keeps_its_own_signature(digits, tmp_path):
    first = run_cli("export", digits, "--format", "tflite", "--output", tmp_path / "a.tflite", "--quiet")
    assert first.exit_code == 0, first
    ran = run_cli("export", digits, "--format", "tflite", "--output", tmp_path / "b.tflite")
    assert ran.exit_code == 2, ran
    assert "signature.json already describes a.tflite" in ran.stderr
    assert f"--output {tmp_path / 'tflite' / 'b.tflite'}" in ran.stderr
    assert not (tmp_path / "b.tflite").exists()
    assert json.loads((tmp_path / "signature.json").read_text())["artifact"] == "a.tflite"
    again = run_cli("export", digits, "--format", "tflite", "--output", tmp_path / "a.tflite", "--quiet")
    assert again.exit_code == 0, again  # the same artifact again: its signature is rewritten


def test_a_keras_file_outside_its_run_is_checked_on_rows_from_its_normalization(digits, tmp_path):
    # Saved by Keras alone: no column names anywhere.
    model = plain_keras_copy(digits / "model.keras", tmp_path / "alone.keras")
    ran = run_cli("export", model, "--format", "tflite", "--output", tmp_path / "out" / "alone.tflite")
    assert ran.exit_code == 0, ran
    assert "256 rows drawn from the model's normalization statistics" in ran.stderr
    signature = json.loads((tmp_path / "out" / "signature.json").read_text())
    assert signature["input"]["columns"] is None
    assert "records no column names" in signature["input"]["preprocessing"]
    assert signature["output"]["classes"] == list(range(10))
    # A copy of mlcli's model.keras carries its columns and classes (mlcli.json inside the archive).
    shutil.copy(digits / "model.keras", tmp_path / "copied.keras")
    ran = run_cli("export", tmp_path / "copied.keras", "--format", "tflite", "--output", tmp_path / "c" / "m.tflite")
    assert ran.exit_code == 0, ran
    signature = json.loads((tmp_path / "c" / "signature.json").read_text())
    assert signature["input"]["columns"] == json.loads((digits / "run.json").read_text())["features"]
    assert signature["output"]["classes"] == list(range(10))


def test_a_run_whose_data_is_gone_is_checked_on_drawn_rows_with_a_note(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    lines = ["a,b,c,label"] + [f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{int(r[0] + r[1] > 0)}" for r in x]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "small.yaml").write_text(textwrap.dedent("""\
        data: {train: train.csv, validation: 0.25}
        model: {layers: [{type: Dense, units: 4, activation: relu}, {type: Dense, units: 2, activation: softmax}]}
        training: {epochs: 1, batch_size: 32}
        """))
    trained = run_cli("train", tmp_path / "small.yaml", "--output", tmp_path / "run", "--quiet")
    assert trained.exit_code == 0, trained
    (tmp_path / "train.csv").unlink()
    ran = run_cli("export", tmp_path / "run", "--format", "savedmodel", "--output", tmp_path / "sm")
    assert ran.exit_code == 0, ran
    assert "the run's data.train cannot be read" in ran.stderr
    assert "rows drawn from the model's normalization statistics instead" in ran.stderr
    assert json.loads((tmp_path / "sm" / "signature.json").read_text())["input"]["columns"] == ["a", "b", "c"]


def test_compare_scales_the_tolerance_above_one():
    from mlcli.use.export import compare
    from mlcli.use.export_formats import ExportCheckFailed

    reference = np.array([[0.5], [250.0]])
    figures = compare("onnx", reference, reference + np.array([[5e-6], [2e-3]]), 1e-5, "rows")
    assert figures["max_abs_diff"] == pytest.approx(2e-3)
    assert figures["max_rel_diff"] == pytest.approx(8e-6)
    with pytest.raises(ExportCheckFailed, match="by up to 2e-05"):
        compare("onnx", reference, reference + np.array([[2e-5], [0.0]]), 1e-5, "rows")
    with pytest.raises(ExportCheckFailed, match="NaN or inf"):
        compare("onnx", reference, np.array([[np.nan], [1.0]]), 1e-5, "rows")
    with pytest.raises(ExportCheckFailed, match="outputs of shape"):
        compare("onnx", reference, np.zeros((2, 3)), 1e-5, "rows")


def test_a_converter_failure_is_exit_1_with_its_reason(digits, tmp_path, monkeypatch):
    from mlcli.use import export_formats

    def failing(fmt, model, path, verbose=False, date_inputs=()):
        raise ValueError("Op type not registered 'FancyOp'\nmore converter detail")

    monkeypatch.setattr(export_formats, "write", failing)
    ran = run_cli("export", digits, "--format", "tflite", "--output", tmp_path / "m.tflite")
    assert ran.exit_code == 1, ran
    assert ("export failed: the tflite converter could not write model.keras: ValueError: Op type not registered "
            "'FancyOp' — nothing was written") in ran.stderr
    assert ran.exception is None and "Traceback" not in ran.stderr
    assert list(tmp_path.iterdir()) == []
