"""A binary classifier's decision threshold through the real CLI: training records the F1-best
threshold on the validation split (run.json and the .keras file's mlcli.json); evaluate and predict
decide with --threshold T or --threshold best; a threshold that cannot apply is exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow

CONFIG = """
name: binary
seed: 3
data: {{train: {train}, validation: {validation}, label: label}}
model:
  layers:
    - {{type: Dense, units: 8, activation: relu}}
    - {{type: Dense, units: {units}, activation: {activation}}}
optimizer: {{type: adam, learning_rate: 0.02}}
loss: {loss}
metrics: [accuracy]
training: {{epochs: {epochs}, batch_size: 32}}
"""


def table(path: Path, classes: int = 2, n: int = 240) -> Path:
    """Two noisy numbers; the label ('no'/'yes', or a/b/c) follows their sum, with overlap."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(n, 2))
    score = x.sum(axis=1) + rng.normal(0, 0.8, n)
    names = ["no", "yes"] if classes == 2 else ["a", "b", "c"]
    label = np.digitize(score, [0.6] if classes == 2 else [-0.5, 0.5])
    path.write_text("x1,x2,label\n" + "".join(f"{a:.4f},{b:.4f},{names[k]}\n" for (a, b), k in zip(x, label)))
    return path


def train(tmp: Path, *, classes=2, validation="0.3", epochs=12, name="run") -> Path:
    units, activation, loss = ((1, "sigmoid", "binary_crossentropy") if classes == 2
                               else (3, "softmax", "sparse_categorical_crossentropy"))
    config = tmp / f"{name}.yaml"
    config.write_text(CONFIG.format(train=table(tmp / f"{name}.csv", classes), validation=validation, units=units,
                                    activation=activation, loss=loss, epochs=epochs))
    ran = run_cli("train", config, "--output", tmp / name)
    assert ran.exit_code == 0, ran
    return tmp / name


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    return train(tmp_path_factory.mktemp("binary"))


def evaluate(*args) -> dict:
    ran = run_cli("evaluate", *map(str, args), "--json")
    assert ran.exit_code == 0, ran
    return json.loads(ran.stdout)


def test_the_f1_best_threshold_is_recorded_and_is_best_on_validation(binary_run):
    recorded = json.loads((binary_run / "run.json").read_text())["threshold"]
    assert recorded["split"] == "validation" and recorded["positive_class"] == "yes" and recorded["rows"] == 72
    assert 0.0 < recorded["best"] < 1.0
    # evaluate's default data is the run's validation split: at the recorded threshold, class yes's F1
    # is the recorded one, and no other threshold does better
    best = evaluate(binary_run, "--threshold", "best")
    assert best["threshold"] == pytest.approx(recorded["best"])
    assert best["per_class"][1]["f1"] == pytest.approx(recorded["f1"], abs=1e-9)
    for other in ("0.1", "0.3", "0.5", "0.7", "0.9"):
        assert evaluate(binary_run, "--threshold", other)["per_class"][1]["f1"] <= recorded["f1"] + 1e-9


def test_accuracy_and_the_confusion_matrix_follow_the_threshold(binary_run):
    everyone = evaluate(binary_run, "--threshold", "0")
    confusion = np.array(everyone["confusion_matrix"])
    assert confusion[:, 0].sum() == 0  # every row above 0: all 'yes'
    assert everyone["metrics"]["accuracy"] == pytest.approx(confusion[1, 1] / confusion.sum())
    nobody = np.array(evaluate(binary_run, "--threshold", "1")["confusion_matrix"])
    assert nobody[:, 1].sum() == 0
    default = evaluate(binary_run)
    assert "threshold" not in default
    assert evaluate(binary_run, "--threshold", "0.5")["confusion_matrix"] == default["confusion_matrix"]


def test_predict_decides_with_the_threshold_and_a_copied_keras_file_keeps_best(binary_run, tmp_path):
    source = binary_run.parent / "run.csv"
    for threshold in ("0.25", "0.8"):
        ran = run_cli("predict", binary_run, source, "--threshold", threshold)
        assert ran.exit_code == 0, ran
        lines = ran.stdout.strip().splitlines()
        assert lines[0] == "prediction,prob_no,prob_yes"
        rows = [line.split(",") for line in lines[1:]]
        assert all(r[0] == ("yes" if float(r[2]) > float(threshold) else "no") for r in rows)
        assert {r[0] for r in rows} == {"yes", "no"}
    alone = tmp_path / "alone.keras"
    shutil.copy(binary_run / "model.keras", alone)  # outside its run: mlcli.json carries the threshold
    recorded = json.loads((binary_run / "run.json").read_text())["threshold"]["best"]
    ran = run_cli("predict", alone, source, "--threshold", "best")
    assert ran.exit_code == 0, ran
    rows = [line.split(",") for line in ran.stdout.strip().splitlines()[1:]]
    assert all(r[0] == ("yes" if float(r[2]) > recorded else "no") for r in rows)


@pytest.mark.parametrize("value, message", [("1.5", "outside [0, 1]"), ("-0.1", "outside [0, 1]"),
                                            ("half", "expected a probability between 0 and 1, or best")])
def test_a_threshold_out_of_range_is_exit_2(binary_run, value, message):
    for command in (("evaluate", binary_run), ("predict", binary_run, binary_run.parent / "run.csv")):
        ran = run_cli(*map(str, command), "--threshold", value)
        assert ran.exit_code == 2, ran
        assert message in ran.stderr and "Traceback" not in ran.stderr


def test_threshold_needs_a_binary_model_and_best_needs_a_record(tmp_path):
    three = train(tmp_path, classes=3, epochs=1, name="three")
    ran = run_cli("evaluate", three, "--threshold", "0.4")
    assert ran.exit_code == 2 and "binary classifiers" in ran.stderr and "has 3 classes" in ran.stderr, ran
    unvalidated = train(tmp_path, validation="null", epochs=1, name="plain")
    assert "threshold" not in json.loads((unvalidated / "run.json").read_text())
    ran = run_cli("predict", unvalidated, tmp_path / "plain.csv", "--threshold", "best")
    assert ran.exit_code == 2, ran
    assert "no recorded F1-best threshold" in ran.stderr and "data.validation" in ran.stderr
