"""Issue 14's training and finetune defects, each through the real CLI (and issue 22's per-run settings)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, run_cli
from test_finetune import refused
from test_reliability import DIVERGING  # epoch 1 fine, loss inf in epoch 2

# ---- 1: a label is never a feature -----------------------------------------------------------------

def test_the_label_listed_as_a_feature_is_a_config_error(tmp_path):
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--set", "data.features=[label]", "--output", tmp_path / "run")
    refused(ran, 2, "--set data.features=[label]: data.features.0: 'label' is the label (data.label), so it "
                    "cannot also be a feature — remove it from data.features")
    assert not (tmp_path / "run").exists()


def test_a_regression_target_listed_as_a_feature_is_named_with_its_line(write, tmp_path):
    config = write("two.yaml", "data:\n  train: builtin:diabetes/train\n  label: [target, bmi]\n"
                               "  features: [age, bmi]\n  task: regression\nloss: mse\nmetrics: [mae]\n")
    ran = run_cli("validate", config)
    refused(ran, 2, "two.yaml:4: data.features.1: 'bmi' is one of the regression targets (data.label)")
    ran = run_cli("train", config, "--output", tmp_path / "run", "--json")
    refused(ran, 2, "data.features.1")
    assert json.loads(ran.stdout)["problems"][0]["key"] == "data.features.1"


@pytest.mark.slow
def test_an_npz_label_array_named_as_the_features_is_refused(write, tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x=rng.normal(size=(40, 3)).astype(np.float32), y=rng.normal(size=(40, 1)))
    # data.label is left at its default, which for .npz means the array y
    config = write("npz.yaml", f"data: {{train: {data}, features: y, task: regression}}\nloss: mse\nmetrics: []\n"
                               "model: {layers: [{type: Dense, units: 1}]}\n")
    refused(run_cli("train", config, "--output", tmp_path / "run"), 2,
            "data.features: data.train:", "'y' is the label (data.label), so it cannot also be a feature")
    assert not (tmp_path / "run").exists()


def test_the_column_planner_refuses_a_feature_that_is_a_label():
    from mlcli.data.columns import model_columns, training_columns
    from mlcli.errors import ConfigError

    with pytest.raises(ConfigError, match="'y' is the label"):
        training_columns(["a", "y"], "data.train: t.csv", labels=["y"], features=["a", "y"])
    with pytest.raises(ConfigError, match="'y' is one of the regression targets"):
        training_columns(["a", "y", "z"], "data.train: t.csv", labels=["y", "z"], features="y")
    # evaluate: a run's features that hold the label it is evaluated against (a run trained before the fix)
    with pytest.raises(ConfigError, match="'y' is the label"):
        model_columns(["a", "y"], "--data: t.csv", features=["a", "y"], width=2, labels=["y"], keep=[])
    assert model_columns(["a", "y"], "input: t.csv", features=["a", "y"], width=2, labels=[], keep=["y"]).features \
        == ["a", "y"]  # predict may keep a feature column


# ---- 13: a label that is not a finite number is a data error, never a class -----------------------------

@pytest.mark.slow
@pytest.mark.parametrize("value", ["inf", "-inf"])
def test_an_infinite_class_label_is_a_data_error_naming_its_row(write, tmp_path, value):
    rows = [f"{i % 7},{(i * 3) % 5},{i % 2}" for i in range(30)]
    rows[4] = f"1,2,{value}"
    data = write("d.csv", "a,b,label\n" + "\n".join(rows) + "\n")
    config = write("c.yaml", f"data: {{train: {data}, validation: null}}\n"
                             "model: {layers: [{type: Dense, units: 2, activation: softmax}]}\n")
    refused(run_cli("train", config, "--output", tmp_path / "run"), 3,
            f"label 'label', row 5: {value} is not a finite number — a label must be a finite number or text")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_nan_class_label_in_parquet_and_an_inf_one_in_npz_are_data_errors(tmp_path, write):
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = np.arange(60, dtype=np.float64).reshape(30, 2)
    y = np.array([i % 2 for i in range(30)], dtype=np.float64)
    y[6] = np.nan  # NaN in a Parquet double column is a value, not a null
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "label": y}), tmp_path / "d.parquet")
    model = "model: {layers: [{type: Dense, units: 2, activation: softmax}]}\n"
    config = write("p.yaml", f"data: {{train: {tmp_path / 'd.parquet'}, validation: null}}\n" + model)
    refused(run_cli("train", config, "--output", tmp_path / "run"), 3, "label 'label', row 7: nan is not a finite")
    y[6] = np.inf
    np.savez(tmp_path / "d.npz", x=x, y=y)
    config = write("n.yaml", f"data: {{train: {tmp_path / 'd.npz'}, validation: null}}\n" + model)
    refused(run_cli("train", config, "--output", tmp_path / "run"), 3, "label 'label', row 7: inf is not a finite")


# ---- finetune: a parent, and what keeping or replacing its layers leaves --------------------------------

@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """configs/digits_base.yaml (64-64-5 on the digits 0-4), one epoch."""
    out = tmp_path_factory.mktemp("parent") / "digits_base"
    ran = run_cli("train", CONFIGS / "digits_base.yaml", "--output", out, "--quiet", "--set", "training.epochs=1")
    assert ran.exit_code == 0, ran
    return out


@pytest.mark.slow
def test_a_head_that_drops_every_layer_and_adds_none_says_nothing_is_left_to_train(parent, tmp_path):
    head = "finetune.head={replace: 3, layers: []}"
    ran = run_cli("finetune", "--from", parent, "--set", head, "--output", tmp_path / "ft")
    refused(ran, 2, f"--set {head}: finetune.head: replace: 3 drops all 3 of the parent's layers and layers: [] "
                    "adds none, so nothing is left to train")
    assert "finetune.freeze" not in ran.stderr and "config.yaml" not in ran.stderr
    head = "finetune.head={replace: 3, layers: [{type: Dropout, rate: 0.1}]}"
    ran = run_cli("finetune", "--from", parent, "--set", head, "--output", tmp_path / "ft")
    refused(ran, 2, f"--set {head}: finetune.head: the model's layers (head_dropout) have no weights, so there is "
                    "nothing to train")
    assert "finetune.freeze" not in ran.stderr
    assert not (tmp_path / "ft").exists()


# ---- 10: the summary names the epoch model.keras holds ---------------------------------------------------

EARLY = """
name: early
seed: 3
data: {train: builtin:digits/train, validation: 0.2}
model:
  layers:
    - {type: Dense, units: 16, activation: relu}
    - {type: Dense, units: 10, activation: softmax}
optimizer: {type: adam, learning_rate: 0.05}
training:
  epochs: 8
  batch_size: 64
  early_stopping: {monitor: val_loss, patience: 2, restore_best_weights: true}
  checkpoint: {monitor: accuracy, mode: max}
runtime: {deterministic: true}
"""


@pytest.mark.slow
def test_early_stopping_restoring_its_best_is_what_the_summary_names(write, tmp_path):
    run = tmp_path / "run"
    ran = run_cli("train", write("early.yaml", EARLY), "--output", run, "--json")
    assert ran.exit_code == 0, ran
    history = _history(run)
    restored = min(history, key=lambda row: row["val_loss"])["epoch"]  # early stopping's best, by val_loss
    best = max(history, key=lambda row: row["accuracy"])["epoch"]  # training.checkpoint's, by accuracy
    assert restored != best  # the case of the issue: two monitors, two epochs
    document = json.loads(ran.stdout)
    assert document["best"]["epoch"] == best and document["model_epoch"] == restored
    assert json.loads((run / "run.json").read_text())["model_epoch"] == restored
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val_loss"] == pytest.approx(history[restored - 1]["val_loss"])
    assert f"best epoch: {best} (accuracy " in ran.stderr
    assert f"kept in best.keras; model.keras and metrics.json hold epoch {restored}, the best by early stopping" \
        in ran.stderr
    again = run_cli("train", "--resume", run, "--json")  # a finished run reports the same
    assert again.exit_code == 0, again
    assert json.loads(again.stdout)["model_epoch"] == restored
    assert f"model.keras and metrics.json hold epoch {restored}" in again.stderr


def _history(run: Path) -> list[dict]:
    import csv

    with open(run / "history.csv") as handle:
        return [{k: float(v) if k != "epoch" else int(v) for k, v in row.items()} for row in csv.DictReader(handle)]


# ---- 2: mirrored training with a batch the replicas cannot share, and absurd device counts ----------

MIRRORED = """
name: mirrored
seed: 11
data: {{train: builtin:digits/train, validation: 0.2, test: {test}}}
model:
  layers:
    - {{type: Dense, units: 32, activation: relu}}
    - {{type: Dense, units: 10, activation: softmax}}
optimizer: {{type: adam, learning_rate: 0.003}}
training: {{epochs: 2, batch_size: 33}}
"""


@pytest.mark.slow
def test_a_global_batch_the_replicas_cannot_share_is_rounded_and_said(tmp_path, write):
    import gzip

    from conftest import REPO, run_process

    with gzip.open(REPO / "mlcli" / "datasets" / "digits_test.csv.gz", "rt") as handle:
        lines = handle.read().splitlines()
    test = write("test33.csv", "\n".join(lines[:34]) + "\n")  # 33 rows: the only test batch splits 17/16
    config = write("mirrored.yaml", MIRRORED.format(test=test))
    run = tmp_path / "run"
    done = run_process("train", config, "--output", run, "--device", "cpu:2", "--json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "training.batch_size 33 -> 34: a global batch is split evenly across the 2 replicas (17 rows each)" \
        in done.stderr
    facts = json.loads((run / "run.json").read_text())["distribute"]
    assert facts["global_batch_size"] == 34 and facts["requested_batch_size"] == 33
    assert facts["per_replica_batch_size"] == 17
    assert json.loads(done.stdout)["distribute"] == facts
    assert json.loads((run / "run.json").read_text())["rows"]["test"] == 33
    # Each step is the one-device step on the same 34 rows.
    one = tmp_path / "one"
    done = run_process("train", config, "--output", one, "--device", "cpu", "--quiet",
                       "--set", "training.batch_size=34")
    assert done.returncode == 0, done.stderr
    assert _history(run)[0]["loss"] == pytest.approx(_history(one)[0]["loss"], rel=1e-5)


@pytest.mark.slow
def test_an_absurd_cpu_device_count_is_refused_before_tensorflow_starts(tmp_path):
    from conftest import run_process

    from mlcli.runtime import cpu_device_limit

    limit = cpu_device_limit()
    done = run_process("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "run", "--device", "cpu:1000",
                       "--json", timeout=120)
    assert done.returncode == 2, done.stderr
    assert "runtime.device: cpu:1000 asks for 1000 logical CPU devices" in done.stderr
    assert f"use at most cpu:{limit} (--device cpu:{limit})" in done.stderr
    assert json.loads(done.stdout)["problems"][0]["key"] == "runtime.device"
    assert not (tmp_path / "run").exists()


# ---- 6: a model that cannot fit in memory is refused before it is built -----------------------------

@pytest.mark.slow
@pytest.mark.parametrize("command", [("train",), ("validate", "--deep")])
def test_an_impossible_layer_size_is_exit_2_naming_the_layer_and_the_estimate(command, tmp_path):
    extra = ("--output", tmp_path / "run") if command[0] == "train" else ()
    ran = run_cli(*command, CONFIGS / "tiny.yaml", "--set", "model.layers.0.units=1000000000000", *extra)
    # 64 x 1e12 + 1e12 and 1e12 x 10 + 10 parameters, 16 bytes each with Adam; outputs of a batch of 64
    refused(ran, 2, "--set model.layers.0.units=1000000000000: model.layers.0.units: training this model needs "
                    "about 1.5 PB of memory but this machine has",
            "this Dense alone has 65,000,000,000,000 parameters; counted: 4 bytes per parameter "
            "(75,000,000,000,010 in all) for the weights, their gradients and adam's 2 slot(s), plus 465.7 TB of "
            "layer outputs for a batch of 64 — make the layer smaller (fewer units)")
    assert "ResourceExhausted" not in ran.stderr
    assert not (tmp_path / "run").exists()


def test_the_estimate_counts_what_keras_counts_for_known_layers():
    from mlcli.config import load_config
    from mlcli.model.memory import configured_layers, layer_sizes, optimizer_slots

    loaded = load_config(CONFIGS / "tiny.yaml", ["model.layers=[{type: Dense, units: 16}, {type: Dropout, rate: 0.1},"
                                                 " {type: BatchNormalization}, {type: Dense, units: 10}]"])
    sizes = layer_sizes(configured_layers(loaded, finetune=False), (64,))
    assert [s.parameters for s in sizes] == [64 * 16 + 16, 0, 4 * 16, 16 * 10 + 10]  # Keras: 1040, 0, 64, 170
    assert [s.outputs for s in sizes] == [16, 16, 16, 10]
    assert optimizer_slots(loaded) == 2  # adam: m and v
    head = load_config(CONFIGS / "tiny.yaml", ["finetune.head={replace: 1, layers: [{type: Dense, units: 3}]}"])
    assert [key for key, _ in configured_layers(head, finetune=True)] == [("model", "layers", 0),
                                                                          ("finetune", "head", "layers", 0)]


# ---- issue 22 item 7: determinism and the dtype policy are set for each run, and put back after it ----

@pytest.mark.slow
def test_a_non_deterministic_run_after_a_deterministic_one_runs_non_deterministic(tmp_path, monkeypatch):
    import keras
    from tensorflow.python.framework import config as tf_config

    from mlcli.training import train

    seen = []
    prepare = train.prepare_data

    def spy(*args, **kwargs):  # called inside the run, once its settings are in force
        seen.append((tf_config.is_op_determinism_enabled(), keras.mixed_precision.global_policy().name))
        return prepare(*args, **kwargs)

    monkeypatch.setattr(train, "prepare_data", spy)  # where the run calls it
    assert not tf_config.is_op_determinism_enabled()
    one = ("--set", "training.epochs=1")
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "a", *one)  # tiny.yaml: deterministic
    assert ran.exit_code == 0, ran
    assert seen[-1] == (True, "float32")
    assert not tf_config.is_op_determinism_enabled()
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "b", *one,
                  "--set", "runtime.deterministic=false", "--set", "runtime.precision=mixed_float16")
    assert ran.exit_code == 0, ran
    assert seen[-1] == (False, "mixed_float16")
    assert not tf_config.is_op_determinism_enabled()
    assert keras.mixed_precision.global_policy().name == "float32"


# ---- train --resume DIR --set training.epochs=N: the one key a resume may change ---------------------

@pytest.mark.slow
def test_resume_with_more_epochs_continues_the_run_and_its_history(tmp_path):
    import yaml

    run, straight = tmp_path / "run", tmp_path / "straight"
    assert run_cli("train", CONFIGS / "tiny.yaml", "--output", run, "--quiet").exit_code == 0  # 2 epochs
    first = (run / "history.csv").read_text()
    ran = run_cli("train", "--resume", run, "--set", "training.epochs=4", "--json")
    assert ran.exit_code == 0, ran
    document = json.loads(ran.stdout)
    assert document["status"] == "completed" and document["epochs_completed"] == 4
    assert "training.epochs 2 -> 4: the run continues after epoch 2, its history going on" in ran.stderr
    assert "epoch 3/4" in ran.stderr and "epoch 1/4" not in ran.stderr  # only the new epochs ran
    assert (run / "history.csv").read_text().startswith(first)  # the first two rows, timings included
    assert len(_history(run)) == 4
    assert yaml.safe_load((run / "config.yaml").read_text())["training"]["epochs"] == 4
    manifest = json.loads((run / "run.json").read_text())
    assert [(c["from"], c["to"]) for c in manifest["epochs_changed"]] == [(2, 4)]
    assert manifest["epochs_completed"] == 4 and len(manifest["resumed_at"]) == 1
    # The same as four epochs in one go (tiny.yaml is deterministic).
    assert run_cli("train", CONFIGS / "tiny.yaml", "--output", straight, "--quiet",
                   "--set", "training.epochs=4").exit_code == 0
    without_seconds = [{k: v for k, v in row.items() if k != "seconds"} for row in _history(run)]
    assert without_seconds == [{k: v for k, v in row.items() if k != "seconds"} for row in _history(straight)]
    # Now the run's config says 4: resuming it again has nothing to do.
    again = run_cli("train", "--resume", run, "--json")
    assert again.exit_code == 0 and "the run had already finished: nothing to do" in again.stderr


@pytest.mark.slow
def test_resume_refuses_other_changed_keys_and_fewer_epochs(tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", CONFIGS / "tiny.yaml", "--output", run, "--quiet").exit_code == 0
    ran = run_cli("train", "--resume", run, "--set", "training.epochs=4", "--set", "training.batch_size=32")
    refused(ran, 2, "was started with a different config; --resume needs the same one",
            "training.batch_size: 64 -> 32")
    assert "training.epochs" not in ran.stderr  # the one key that may change is not listed
    refused(run_cli("train", "--resume", run, "--set", "training.epochs=1"), 2,
            f"training.epochs 1: {run} has already trained 2 epoch(s), and a resumed run only goes on from there",
            "give training.epochs of at least 2")
    assert len(_history(run)) == 2


@pytest.mark.slow
def test_resume_with_more_epochs_after_early_stopping_is_refused(write, tmp_path):
    run = tmp_path / "run"
    config = write("stops.yaml", EARLY.replace("patience: 2", "patience: 0"))
    ran = run_cli("train", config, "--output", run, "--json")
    assert ran.exit_code == 0, ran
    done = json.loads(ran.stdout)["epochs_completed"]
    assert done < 8
    refused(run_cli("train", "--resume", run, "--set", "training.epochs=20"), 2,
            f"training.epochs 20: early stopping ended {run} after epoch {done}, so more epochs would not train it "
            "further", f"mlcli finetune --from {run}")


# ---- --progress-every: plain progress lines inside long epochs, and while predicting -------------------

@pytest.mark.slow
def test_progress_every_prints_lines_inside_an_epoch_and_while_predicting(tmp_path):
    import re

    run = tmp_path / "run"
    # 576 steps of 2 rows, all in one TensorFlow call: without the flag, nothing until the epoch ends.
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", run, "--set", "training.batch_size=2",
                  "--set", "training.epochs=1", "--progress-every", "0.1")
    assert ran.exit_code == 0, ran
    lines = ran.stderr.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("epoch 1/1  loss "))
    inside = [line for line in lines[:end] if re.fullmatch(r"epoch 1/1  step \d+/576(  loss \S+)?  \(\d+\.\ds\)", line)]
    assert inside, ran.stderr
    assert all("\r" not in line and "\x1b" not in line for line in lines)
    predicted = run_cli("predict", run, "builtin:digits/test", "--output", tmp_path / "p.csv",
                        "--progress-every", "0.1")
    assert predicted.exit_code == 0, predicted
    assert re.search(r"^predict: still running on builtin:digits/test \(\d+s so far\)$", predicted.stderr, re.M), \
        predicted.stderr
    quiet = run_cli("predict", run, "builtin:digits/test", "--output", tmp_path / "q.csv", "--progress-every", "0.1",
                    "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == ""


# ---- 11: a diverged run is answered with what can work, not with --resume ---------------------------

@pytest.mark.slow
def test_a_run_that_diverged_before_any_epoch_suggests_a_new_run_with_a_lower_rate(write, tmp_path):
    run = tmp_path / "run"
    config = write("d.yaml", DIVERGING.replace("initial_learning_rate: 0.0001", "initial_learning_rate: 1000.0"))
    ran = run_cli("train", config, "--output", run)
    assert ran.exit_code == 6, ran
    retry = f"mlcli train {run}/config.yaml --output {run}-retry --set optimizer.learning_rate.initial_learning_rate=100"
    assert "--resume would repeat the same steps from the same state and diverge again" in ran.stderr
    assert retry in ran.stderr
    evaluated = run_cli("evaluate", run)
    refused(evaluated, 2, "the run has no model.keras yet (status: diverged)",
            "--resume would repeat the same steps", retry)
    assert "mlcli train --resume" not in evaluated.stderr
    resumed = run_cli("train", "--resume", run, "--set", "optimizer.learning_rate.initial_learning_rate=100")
    refused(resumed, 2, "--resume needs the same one", "--resume would repeat the same steps", retry)
    again = run_cli(*retry.split()[1:], "--set", "training.epochs=1")  # the suggestion is a command mlcli takes
    assert again.exit_code in (0, 6), again


@pytest.mark.slow
def test_evaluate_on_a_diverged_run_with_a_model_says_what_it_holds(write, tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", write("d.yaml", DIVERGING), "--output", run).exit_code == 6
    ran = run_cli("evaluate", run)
    assert ran.exit_code == 0, ran
    assert "this run diverged (loss inf at epoch 2); model.keras holds its last finite state, after epoch 1." \
        in ran.stderr or "this run diverged (loss nan at epoch 2)" in ran.stderr
    assert f"mlcli train {run}/config.yaml --output {run}-retry --set " \
           "optimizer.learning_rate.initial_learning_rate=1e-05" in ran.stderr
