"""Every data problem train can meet: exit code, a message naming file, column and row, no traceback,
and no run directory left behind claiming anything."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow

CONFIG = """
name: t
data: {{train: {train}, validation: {validation}, label: label{extra}}}
model:
  layers:
    - {{type: Dense, units: 4, activation: relu}}
    - {{type: Dense, units: {units}, activation: softmax}}
training: {{epochs: 1, batch_size: 8}}
"""

GOOD = "a,b,label\n" + "".join(f"{i % 7},{(i * 3) % 5},{i % 2}\n" for i in range(40))


def _train(write, tmp_path, csv_text: str, *, validation="0.25", units=2, extra="", name="d.csv"):
    if isinstance(csv_text, bytes):
        write(name, csv_text)
    else:
        write(name, csv_text)
    config = write("c.yaml", CONFIG.format(train=name, validation=validation, units=units, extra=extra))
    ran = run_cli("train", config, "--output", tmp_path / "run")
    assert "Traceback" not in ran.stderr, ran
    return ran


def _no_run_left(tmp_path):
    run = tmp_path / "run"
    assert not (run / "model.keras").exists()
    assert not (run / "run.json").exists() or '"completed"' not in (run / "run.json").read_text()


def test_good_data_trains(write, tmp_path):
    ran = _train(write, tmp_path, GOOD)
    assert ran.exit_code == 0, ran
    run = tmp_path / "run"
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "completed" and manifest["epochs_completed"] == 1
    assert manifest["rows"] == {"train": 30, "validation": 10}  # 40 rows, validation 0.25
    assert manifest["features"] == ["a", "b"] and manifest["labels"] == ["label"]
    assert json.loads((run / "labels.json").read_text()) == [0, 1]
    with open(run / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1"] and "epoch 1/1" in ran.stderr
    assert (run / "model.keras").is_file() and (run / "best.keras").is_file()


def test_missing_file(write, tmp_path):
    config = write("c.yaml", CONFIG.format(train="nope.csv", validation="0.25", units=2, extra=""))
    ran = run_cli("train", config, "--output", tmp_path / "run")
    assert ran.exit_code == 3, ran
    assert "nope.csv" in ran.stderr and "file not found" in ran.stderr
    _no_run_left(tmp_path)


def test_missing_label_column(write, tmp_path):
    ran = _train(write, tmp_path, GOOD.replace("label", "target", 1))
    assert ran.exit_code == 3
    assert "label column 'label' not found" in ran.stderr and "target" in ran.stderr and "d.csv" in ran.stderr
    _no_run_left(tmp_path)


def test_missing_feature_column(write, tmp_path):
    ran = _train(write, tmp_path, GOOD, extra=", features: [a, zz]")
    assert ran.exit_code == 3
    assert "'zz' not found" in ran.stderr
    _no_run_left(tmp_path)


def test_non_numeric_value_names_column_and_row(write, tmp_path):
    lines = GOOD.splitlines()
    lines[6] = "3,abc,1"  # data row 6
    ran = _train(write, tmp_path, "\n".join(lines) + "\n")
    assert ran.exit_code == 3
    assert "column 'b', row 6" in ran.stderr and "'abc' is not a number" in ran.stderr and "d.csv" in ran.stderr
    _no_run_left(tmp_path)


def test_nan_in_features(write, tmp_path):
    lines = GOOD.splitlines()
    lines[3] = "nan,1,0"
    ran = _train(write, tmp_path, "\n".join(lines) + "\n")
    assert ran.exit_code == 3
    assert "column 'a', row 3" in ran.stderr and "NaN" in ran.stderr


def test_inf_in_features(write, tmp_path):
    lines = GOOD.splitlines()
    lines[9] = "1,inf,0"
    ran = _train(write, tmp_path, "\n".join(lines) + "\n")
    assert ran.exit_code == 3
    assert "column 'b', row 9" in ran.stderr and "inf" in ran.stderr


def test_huge_value_overflowing_float32(write, tmp_path):
    lines = GOOD.splitlines()
    lines[2] = "1e300,1,0"
    ran = _train(write, tmp_path, "\n".join(lines) + "\n")
    assert ran.exit_code == 3
    assert "column 'a', row 2" in ran.stderr and "too large for float32" in ran.stderr


def test_empty_value_in_features(write, tmp_path):
    lines = GOOD.splitlines()
    lines[4] = ",1,0"
    ran = _train(write, tmp_path, "\n".join(lines) + "\n")
    assert ran.exit_code == 3
    assert "column 'a', row 4" in ran.stderr and "missing or NaN value" in ran.stderr


def test_class_count_does_not_fit_last_layer(write, tmp_path):
    ran = _train(write, tmp_path, GOOD, units=3)
    assert ran.exit_code == 2
    assert "3 units" in ran.stderr and "2 classes" in ran.stderr and "c.yaml:" in ran.stderr
    _no_run_left(tmp_path)


def test_empty_validation_split(write, tmp_path):
    ran = _train(write, tmp_path, GOOD, validation="0.001")
    assert ran.exit_code == 3
    assert "empty split" in ran.stderr


def test_header_only(write, tmp_path):
    ran = _train(write, tmp_path, "a,b,label\n")
    assert ran.exit_code == 3
    assert "no data rows" in ran.stderr


def test_empty_file(write, tmp_path):
    ran = _train(write, tmp_path, "")
    assert ran.exit_code == 3
    assert "empty" in ran.stderr and "d.csv" in ran.stderr


def test_single_class(write, tmp_path):
    ran = _train(write, tmp_path, "a,b,label\n" + "".join(f"{i},{i},7\n" for i in range(20)))
    assert ran.exit_code == 3
    assert "single class" in ran.stderr


def test_validation_file_with_unseen_label(write, tmp_path):
    write("v.csv", "a,b,label\n1,2,0\n3,4,5\n")
    ran = _train(write, tmp_path, GOOD, validation="v.csv")
    assert ran.exit_code == 3
    assert "row 2" in ran.stderr and "label 5" in ran.stderr and "v.csv" in ran.stderr


def test_directory_instead_of_file(write, tmp_path):
    (tmp_path / "d.csv").mkdir()
    config = write("c.yaml", CONFIG.format(train="d.csv", validation="0.25", units=2, extra=""))
    ran = run_cli("train", config, "--output", tmp_path / "run")
    assert ran.exit_code == 3 and "is a directory" in ran.stderr


def test_ragged_rows(write, tmp_path):
    ran = _train(write, tmp_path, GOOD + "1,2,3,4\n")
    assert ran.exit_code == 3
    assert "d.csv" in ran.stderr and "cannot be read as CSV" in ran.stderr


def test_non_utf8_text(write, tmp_path):
    ran = _train(write, tmp_path, ("a,b,label\n" + "1,2,caf\xe9\n" * 5 + "1,2,x\n" * 5).encode("latin-1"))
    assert ran.exit_code == 3
    assert "UTF" in ran.stderr


def test_pickled_npz_is_refused(write, tmp_path):
    np.savez(tmp_path / "d.npz", x=np.array([[1, 2]] * 10, dtype=object), y=np.arange(10) % 2)
    config = write("c.yaml", CONFIG.format(train="d.npz", validation="0.25", units=2, extra=""))
    ran = run_cli("train", config, "--output", tmp_path / "run")
    assert ran.exit_code == 3
    assert "never loads" in ran.stderr


def test_unknown_builtin(write, tmp_path):
    config = write("c.yaml", CONFIG.format(train="builtin:mnist", validation="0.25", units=2, extra=""))
    ran = run_cli("train", config, "--output", tmp_path / "run")
    assert ran.exit_code == 3 and "builtin:digits" in ran.stderr


def test_unknown_layer_type_has_did_you_mean(write, tmp_path):
    write("d.csv", GOOD)
    config = write("c.yaml", CONFIG.format(train="d.csv", validation="0.25", units=2, extra="").replace(
        "type: Dense, units: 4", "type: Dens, units: 4"))
    ran = run_cli("train", config, "--output", tmp_path / "run")
    assert ran.exit_code == 2, ran
    assert "model.layers.0.type" in ran.stderr and "did you mean 'Dense'" in ran.stderr and "c.yaml:6" in ran.stderr


def test_unknown_layer_argument_has_did_you_mean(write, tmp_path):
    write("d.csv", GOOD)
    config = write("c.yaml", CONFIG.format(train="d.csv", validation="0.25", units=2, extra="").replace(
        "units: 4, activation: relu", "unit: 4, activation: relu"))
    ran = run_cli("train", config, "--output", tmp_path / "run")
    assert ran.exit_code == 2, ran
    assert "model.layers.0.unit" in ran.stderr and "did you mean 'units'" in ran.stderr


def test_unknown_optimizer_loss_metric(write, tmp_path):
    write("d.csv", GOOD)
    base = CONFIG.format(train="d.csv", validation="0.25", units=2, extra="")
    for extra, expected in (("optimizer: {type: adamm}\n", "did you mean 'adam'"),
                            ("loss: categorical_crossentropi\n", "did you mean 'categorical_crossentropy'"),
                            ("metrics: [acuracy]\n", "did you mean 'accuracy'"),
                            ("optimizer: {type: adam, lr: 0.1}\n", "did you mean 'learning_rate'")):
        config = write("c.yaml", base + extra)
        ran = run_cli("train", config, "--output", tmp_path / "run")
        assert ran.exit_code == 2, (extra, ran)
        assert expected in ran.stderr, (extra, ran.stderr)
