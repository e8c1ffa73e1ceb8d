"""Model files from elsewhere never run code unless the user says they trust them (Keras safe mode)."""

from __future__ import annotations

import csv
import io

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory):
    """A .keras file whose Lambda layer holds Python bytecode (as an attacker's file could)."""
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2.0),
                              keras.layers.Dense(2, activation="softmax")])
    path = tmp_path_factory.mktemp("hostile") / "lambda.keras"
    model.save(path)
    return path


ROWS = "a,b,c\n1,2,3\n4,5,6\n"


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_lambda_layer_is_refused_without_unsafe(lambda_model, write, command):
    data = write("rows.csv", "a,b,c,label\n1,2,3,1\n4,5,6,0\n" if command == "evaluate" else ROWS)
    args = [command, lambda_model, data] if command == "predict" else [command, lambda_model, "--data", data]
    ran = run_cli(*args)
    assert ran.exit_code == 2, ran
    assert "holds Python code" in ran.stderr and "--unsafe" in ran.stderr
    assert "Traceback" not in ran.stderr and ran.stdout == ""


def test_unsafe_loads_a_trusted_lambda_model(lambda_model, write):
    ran = run_cli("predict", lambda_model, write("rows.csv", ROWS), "--unsafe")
    assert ran.exit_code == 0, ran
    rows = list(csv.reader(io.StringIO(ran.stdout)))
    assert rows[0] == ["prediction", "prob_0", "prob_1"] and len(rows) == 3


def test_finetune_from_a_lambda_model_is_refused(lambda_model, write, tmp_path):
    config = write("ft.yaml", "data: {train: rows.csv, validation: null}\n")
    write("rows.csv", "a,b,c,label\n" + "1,2,3,0\n4,5,6,1\n" * 10)
    ran = run_cli("finetune", config, "--from", lambda_model, "--output", tmp_path / "run")
    assert ran.exit_code == 2, ran
    assert "holds Python code" in ran.stderr and "--unsafe" in ran.stderr


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", b"PK\x03\x04 truncated"])
def test_broken_keras_files_are_usage_errors(write, content):
    path = write("broken.keras", content)
    ran = run_cli("predict", path, write("rows.csv", ROWS))
    assert ran.exit_code == 2, ran
    assert f"CKPT {path}: is not a complete Keras archive" in ran.stderr and "Traceback" not in ran.stderr
