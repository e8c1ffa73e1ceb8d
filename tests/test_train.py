"""mlcli train through the real CLI: run directory, numbers, outputs, errors."""

from __future__ import annotations

import csv
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CONFIGS, run_cli, run_process

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory) -> tuple[Path, dict, object]:
    """The seed network, exactly as shipped: 10 epochs on the bundled digits."""
    out = tmp_path_factory.mktemp("seed") / "run"
    ran = run_cli("train", CONFIGS / "digits.yaml", "--output", out, "--json")
    assert ran.exit_code == 0, ran
    return out, json.loads(ran.stdout), ran


def test_seed_network_reaches_090_test_accuracy(seed_run):
    out, doc, _ = seed_run
    assert doc["metrics"]["test_accuracy"] >= 0.90
    assert doc["parameters"]["trainable"] == 8970  # 64*64+64 + 64*64+64 + 64*10+10
    assert doc["epochs_completed"] == 10


def test_json_document_has_the_contract_keys(seed_run):
    out, doc, ran = seed_run
    for key in ("run_dir", "status", "epochs_completed", "metrics", "best", "device", "precision"):
        assert key in doc
    assert doc["status"] == "completed"
    assert Path(doc["run_dir"]) == out
    assert doc["device"] == "cpu" and doc["precision"] == "float32"
    assert doc["best"]["monitor"] == "val_loss" and 1 <= doc["best"]["epoch"] <= 10
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy"} <= set(doc["metrics"])
    assert ran.stdout.strip().startswith("{") and ran.stdout.strip().endswith("}")  # nothing else on stdout
    assert "epoch 10/10" in ran.stderr  # progress went to stderr


def test_run_directory_is_complete(seed_run):
    out, doc, _ = seed_run
    for name in ("config.yaml", "model.keras", "best.keras", "labels.json", "history.csv", "metrics.json", "run.json"):
        assert (out / name).is_file(), name
    assert any((out / "logs").rglob("events.out.tfevents.*"))
    progress = json.loads((out / "state" / "progress.json").read_text())
    assert progress["epochs_completed"] == 10 and progress["step"] == 0
    assert (out / "state" / progress["arrays"]).is_file()
    assert json.loads((out / "labels.json").read_text()) == list(range(10))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == pytest.approx(doc["metrics"])
    with open(out / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 11))
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"]
    assert float(rows[0]["learning_rate"]) == pytest.approx(0.01)
    assert all(float(r["seconds"]) > 0 for r in rows)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["seed"] == 42 and manifest["device"] == "cpu"
    assert set(manifest["versions"]) == {"mlcli", "tensorflow", "keras", "python"}
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["config_hash"])
    train_files = manifest["data"]["train"][0]
    assert train_files["spec"] == "builtin:digits/train" and train_files["rows"] == 1438
    assert re.fullmatch(r"[0-9a-f]{64}", train_files["files"][0]["sha256"])
    assert manifest["rows"] == {"train": 1151, "validation": 287, "test": 359}  # stratified 20% per class
    assert manifest["started_at"] and manifest["ended_at"]
    assert manifest["command"] == ["mlcli", "train", str(CONFIGS / "digits.yaml"), "--output", str(out), "--json"]


def test_resolved_config_is_accepted_by_train(seed_run):
    out, _, _ = seed_run
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["model"]["layers"][0] == {"type": "Dense", "units": 64, "activation": "relu"}
    assert resolved["optimizer"] == {"type": "adam", "learning_rate": 0.01}
    ran = run_cli("validate", out / "config.yaml")
    assert ran.exit_code == 0, ran


def test_model_keras_reloads_in_a_fresh_process_with_the_same_outputs(seed_run, tmp_path):
    out, _, _ = seed_run
    import keras

    from mlcli.data.frames import load_frame

    rows = load_frame("builtin:digits/test", "test", labels=["label"], features=None).x[:50]
    np.save(tmp_path / "rows.npy", rows)
    here = keras.saving.load_model(out / "model.keras").predict(rows, verbose=0)
    script = (
        "import sys, numpy as np, keras\n"
        f"m = keras.saving.load_model({str(out / 'model.keras')!r})\n"
        f"np.save({str(tmp_path / 'fresh.npy')!r}, m.predict(np.load({str(tmp_path / 'rows.npy')!r}), verbose=0))\n"
    )
    done = __import__("subprocess").run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    fresh = np.load(tmp_path / "fresh.npy")
    np.testing.assert_allclose(fresh, here, atol=1e-6)
    assert (fresh.argmax(1) == here.argmax(1)).all()


def test_regression_on_diabetes_reports_loss_and_mae(tmp_path):
    ran = run_cli("train", CONFIGS / "diabetes.yaml", "--output", tmp_path / "r", "--json",
                  "--set", "training.epochs=3")
    assert ran.exit_code == 0, ran
    doc = json.loads(ran.stdout)
    assert {"loss", "mae", "val_loss", "val_mae", "test_loss", "test_mae"} <= set(doc["metrics"])
    assert not (tmp_path / "r" / "labels.json").exists()  # no classes in regression
    manifest = json.loads((tmp_path / "r" / "run.json").read_text())
    assert manifest["task"] == "regression" and manifest["labels"] == ["target"]


def _tiny_table(n: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "yes", "no")
    return x, y


def _assert_learned_the_separable_table(metrics: dict) -> None:
    """_tiny_table is split by a plane: 20 epochs fit its 90 training rows and all but 2 or 3 of its 30
    validation rows (measured: 1.0 and 28/30)."""
    assert metrics["accuracy"] >= 0.97, metrics
    assert metrics["val_accuracy"] >= 0.9, metrics


TINY = """
name: t
seed: 3
data: {{train: {train}, validation: 0.25, label: {label}}}
model:
  layers:
    - {{type: Dense, units: 8, activation: relu}}
    - {{type: Dense, units: 2, activation: softmax}}
training: {{epochs: 2, batch_size: 16}}
"""


def test_csv_with_string_labels(write, tmp_path):
    x, y = _tiny_table()
    lines = ["a,b,c,answer"] + [f"{r[0]},{r[1]},{r[2]},{label}" for r, label in zip(x, y)]
    write("d.csv", "\n".join(lines) + "\n")
    config = write("c.yaml", TINY.format(train="d.csv", label="answer"))
    ran = run_cli("train", config, "--output", tmp_path / "r", "--quiet")
    assert ran.exit_code == 0, ran
    assert json.loads((tmp_path / "r" / "labels.json").read_text()) == ["no", "yes"]


def test_parquet_input(write, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    x, y = _tiny_table()
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": (y == "yes").astype(int)}),
                   tmp_path / "d.parquet")
    config = write("c.yaml", TINY.format(train="d.parquet", label="label"))
    ran = run_cli("train", config, "--output", tmp_path / "r", "--json", "--quiet", "--set", "training.epochs=20")
    assert ran.exit_code == 0, ran
    _assert_learned_the_separable_table(json.loads(ran.stdout)["metrics"])
    assert json.loads((tmp_path / "r" / "run.json").read_text())["features"] == ["a", "b", "c"]


def test_npz_input_with_default_array_names(write, tmp_path):
    x, y = _tiny_table()
    np.savez(tmp_path / "d.npz", x=x, y=(y == "yes").astype(np.int64))
    config = write("c.yaml", TINY.format(train="d.npz", label="label"))
    ran = run_cli("train", config, "--output", tmp_path / "r", "--quiet")
    assert ran.exit_code == 0, ran
    assert json.loads((tmp_path / "r" / "labels.json").read_text()) == [0, 1]


def test_binary_crossentropy_with_one_sigmoid_unit(write, tmp_path):
    x, y = _tiny_table()
    lines = ["a,b,c,label"] + [f"{r[0]},{r[1]},{r[2]},{label}" for r, label in zip(x, y)]
    write("d.csv", "\n".join(lines) + "\n")
    config = write("c.yaml", TINY.format(train="d.csv", label="label").replace(
        "units: 2, activation: softmax", "units: 1, activation: sigmoid") + "loss: binary_crossentropy\n")
    ran = run_cli("train", config, "--output", tmp_path / "r", "--json", "--quiet", "--set", "training.epochs=20")
    assert ran.exit_code == 0, ran
    # A metric computed as if there were one class per unit would stay near 0.5 here.
    _assert_learned_the_separable_table(json.loads(ran.stdout)["metrics"])
    assert json.loads((tmp_path / "r" / "labels.json").read_text()) == ["no", "yes"]


def test_two_deterministic_runs_give_identical_weights(tmp_path):
    import keras

    for name in ("a", "b"):
        ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / name, "--quiet")
        assert ran.exit_code == 0, ran
    first = keras.saving.load_model(tmp_path / "a" / "model.keras").get_weights()
    second = keras.saving.load_model(tmp_path / "b" / "model.keras").get_weights()
    assert all(np.array_equal(p, q) for p, q in zip(first, second))
    assert (tmp_path / "a" / "history.csv").read_text().splitlines()[1].split(",")[:5] == \
        (tmp_path / "b" / "history.csv").read_text().splitlines()[1].split(",")[:5]


def test_gate_failure_exits_5_with_the_run_saved(tmp_path):
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "r", "--quiet",
                  "--fail-under", "test_accuracy=1.01", "--fail-over", "loss=100")
    assert ran.exit_code == 5, ran
    assert "test_accuracy" in ran.stderr and "below 1.01" in ran.stderr
    assert (tmp_path / "r" / "model.keras").is_file()
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "completed"


def test_json_holds_one_document_whatever_the_exit_code(tmp_path):
    # A failing gate: the run's own document (exit 5), not a second one for the error.
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "r", "--json", "--fail-under", "test_accuracy=1.01")
    assert ran.exit_code == 5, ran
    assert json.loads(ran.stdout)["status"] == "completed"
    # Failing before any run: a document saying why, with the exit code and each config problem.
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "c", "--json",
                  "--set", "training.epochs=abc", "--set", "training.batch_size=0")
    assert ran.exit_code == 2, ran
    document = json.loads(ran.stdout)
    assert document["status"] == "error" and document["exit_code"] == 2 and document["error"] == "config error"
    assert sorted(p["key"] for p in document["problems"]) == ["training.batch_size", "training.epochs"]
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "d", "--json", "--set", "data.train=nope.csv")
    assert ran.exit_code == 3, ran
    document = json.loads(ran.stdout)
    assert document["exit_code"] == 3 and "nope.csv" in document["message"] and "data error" in ran.stderr
    ran = run_cli("evaluate", tmp_path / "r", "--json", "--data", "nope.csv")
    assert ran.exit_code == 3 and json.loads(ran.stdout)["error"] == "data error", ran
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "e", "--set", "data.train=nope.csv")
    assert ran.exit_code == 3 and ran.stdout == "", ran  # without --json, stdout stays empty


def test_passing_gates_exit_0(tmp_path):
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "r", "--quiet",
                  "--fail-under", "val_accuracy=0.1", "--fail-over", "val_loss=100")
    assert ran.exit_code == 0, ran


def test_unknown_gate_metric_is_exit_2_before_training(tmp_path):
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "r", "--fail-under", "f1=0.5")
    assert ran.exit_code == 2, ran
    assert "'f1'" in ran.stderr and "never computed" in ran.stderr
    assert not (tmp_path / "r").exists()


def test_malformed_gate_is_exit_2(tmp_path):
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "r", "--fail-under", "accuracy")
    assert ran.exit_code == 2 and "METRIC=NUMBER" in ran.stderr


def test_plain_output_when_not_a_terminal(tmp_path):
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "r")
    assert ran.exit_code == 0, ran
    assert "\r" not in ran.stderr and "\x1b[" not in ran.stderr
    epoch_lines = [line for line in ran.stderr.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and "val_accuracy" in epoch_lines[0]
    assert "1,210 trainable" in ran.stderr and str(tmp_path / "r") in ran.stderr


def test_quiet_prints_nothing(tmp_path):
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "r", "--quiet")
    assert ran.exit_code == 0 and ran.stderr == "" and ran.stdout == ""


def test_default_run_directory_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for expected in ("tiny", "tiny-2", "tiny-3"):
        ran = run_cli("train", CONFIGS / "tiny.yaml", "--quiet", "--json", "--set", "training.epochs=1")
        assert ran.exit_code == 0, ran
        assert Path(json.loads(ran.stdout)["run_dir"]) == Path("runs") / expected
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["tiny", "tiny-2", "tiny-3"]


def test_explicit_output_holding_a_run_is_refused_then_forced(tmp_path):
    out = tmp_path / "r"
    assert run_cli("train", CONFIGS / "tiny.yaml", "--output", out, "--quiet", "--set", "training.epochs=1").exit_code == 0
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", out, "--quiet")
    assert ran.exit_code == 2 and "already holds a run" in ran.stderr and "--force" in ran.stderr
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", out, "--quiet", "--force", "--seed", "11")
    assert ran.exit_code == 0, ran
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["seed"] == 11 and manifest["epochs_completed"] == 2


def test_force_replaces_a_run_only_once_the_new_one_passes_its_checks(tmp_path):
    out = tmp_path / "r"
    assert run_cli("train", CONFIGS / "tiny.yaml", "--output", out, "--quiet", "--set", "training.epochs=1").exit_code == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    failing = [
        (3, "missing.csv", ["--set", "data.train=missing.csv"]),  # a data error
        (2, "units", ["--set", "model.layers.1.units=5"]),  # a last layer that does not fit the classes
        (2, "bogus", ["--fail-under", "bogus=1"]),  # an unknown gate metric
    ]
    for code, fragment, args in failing:
        ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", out, "--quiet", "--force", *args)
        assert ran.exit_code == code and fragment in ran.stderr, ran
        after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
        assert after == before, f"{args}: the old run changed"
    # A run that passes replaces every file of the old one: no best.keras survives from it.
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", out, "--quiet", "--force",
                  "--set", "training.epochs=1", "--set", "data.validation=null")
    assert ran.exit_code == 0, ran
    assert (out / "model.keras").is_file() and not (out / "best.keras").exists()


def test_non_run_directory_is_not_deleted(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", out, "--force")
    assert ran.exit_code == 2 and "not an mlcli run" in ran.stderr
    assert (out / "precious.txt").read_text() == "keep"


def test_no_validation_means_no_best_checkpoint(tmp_path):
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "r", "--quiet", "--json",
                  "--set", "data.validation=null")
    assert ran.exit_code == 0, ran
    assert not (tmp_path / "r" / "best.keras").exists()
    assert json.loads(ran.stdout)["best"] is None
    assert "val_loss" not in json.loads(ran.stdout)["metrics"]


def test_early_stopping_stops_and_restores_best(tmp_path):
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "r", "--quiet", "--json",
                  "--set", "training.epochs=40", "--set", "optimizer.learning_rate=0.2",
                  "--set", "training.early_stopping={monitor: val_loss, patience: 1}")
    assert ran.exit_code == 0, ran
    doc = json.loads(ran.stdout)
    assert doc["epochs_completed"] < 40
    with open(tmp_path / "r" / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert doc["metrics"]["val_loss"] == pytest.approx(float(best["val_loss"]))


def test_device_gpu_without_gpu_is_exit_4_quickly(tmp_path):
    started = time.monotonic()
    done = run_process("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "r", "--device", "gpu")
    assert done.returncode == 4, done.stderr
    assert "no usable GPU" in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "r").exists()


def test_tensorflow_startup_noise_is_hidden_unless_verbose(tmp_path):
    quiet = run_process("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "a", "--set", "training.epochs=1")
    assert quiet.returncode == 0, quiet.stderr
    for noise in ("oneDNN", "cuda", "absl", "cpu_feature_guard"):
        assert noise not in quiet.stderr
    loud = run_process("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "b", "--set", "training.epochs=1",
                       "--verbose")
    assert loud.returncode == 0, loud.stderr
    assert "oneDNN" in loud.stderr or "cuda" in loud.stderr.lower()


def test_steps_per_execution_does_not_change_the_math(tmp_path):
    import keras

    for name, value in (("one", "1"), ("auto", "auto"), ("odd", "5")):
        ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / name, "--quiet",
                      "--set", f"training.steps_per_execution={value}")
        assert ran.exit_code == 0, ran
    reference = keras.saving.load_model(tmp_path / "one" / "model.keras").get_weights()
    for name in ("auto", "odd"):  # 18 steps per epoch: 5 does not divide it, auto runs a whole epoch per call
        weights = keras.saving.load_model(tmp_path / name / "model.keras").get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(reference, weights)), name
        assert (tmp_path / name / "history.csv").read_text().splitlines()[2].split(",")[:5] == \
            (tmp_path / "one" / "history.csv").read_text().splitlines()[2].split(",")[:5]


def test_tensorboard_logs_hold_every_epoch_of_history(seed_run):
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _, _ = seed_run
    with open(out / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    for side, prefix in (("train", ""), ("validation", "val_")):
        events = EventAccumulator(str(out / "logs" / side))
        events.Reload()
        for metric in ("loss", "accuracy"):
            logged = [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors(f"epoch_{metric}")]
            assert [step for step, _ in logged] == list(range(10))
            assert [value for _, value in logged] == pytest.approx([float(r[prefix + metric]) for r in rows])


def test_a_last_layer_that_does_not_fit_points_at_what_set_its_width(tmp_path):
    # From the config file: its file and line; from --set: the --set that gave the width.
    narrow = tmp_path / "narrow.yaml"
    narrow.write_text((CONFIGS / "tiny.yaml").read_text().replace("units: 10,", "units: 7,"))
    line = narrow.read_text().splitlines().index("    - {type: Dense, units: 7, activation: softmax}") + 1
    ran = run_cli("train", narrow, "--output", tmp_path / "a")
    assert ran.exit_code == 2, ran
    assert f"narrow.yaml:{line}: model.layers.1.units: the last layer has 7 units but the data has 10 classes" \
        in ran.stderr
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "b", "--set", "model.layers.1.units=5")
    assert ran.exit_code == 2, ran
    assert "--set model.layers.1.units=5: model.layers.1.units: the last layer has 5 units" in ran.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_an_epoch_stopped_by_a_signal_is_not_shown_as_finished(capsys):
    # The plain progress line of an epoch appears only when the epoch finished (and history.csv has it).
    from mlcli.training.callbacks import Progress

    progress = Progress(epochs=3, steps=10)
    progress.on_epoch_begin(0)
    progress.on_train_batch_end(9, {"loss": 0.5})
    progress.on_epoch_end(0, {"loss": 0.5})
    progress.on_epoch_begin(1)
    progress.on_train_batch_end(3, {"loss": 0.4})  # a signal stops the run after 4 of 10 steps
    progress.on_epoch_end(1, {"loss": 0.4})
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 1 and lines[0].startswith("epoch 1/3  loss 0.5000"), lines
