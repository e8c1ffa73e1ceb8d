"""`mlcli validate --deep`: Keras names and the model's fit to the data, without training."""

from __future__ import annotations

import pytest
from conftest import CONFIGS, run_cli

pytestmark = pytest.mark.slow


def test_deep_check_passes_on_the_seed_config():
    ran = run_cli("validate", CONFIGS / "digits.yaml", "--deep")
    assert ran.exit_code == 0, ran
    assert "10 classes" in ran.stderr and "8,970 trainable" in ran.stderr and "train 1151" in ran.stderr


def test_deep_check_finds_a_last_layer_that_does_not_fit():
    ran = run_cli("validate", CONFIGS / "digits.yaml", "--deep", "--set", "model.layers.2.units=9")
    assert ran.exit_code == 2
    assert "--set model.layers.2.units=9: model.layers.2.units: the last layer has 9 units but the data has " \
        "10 classes" in ran.stderr  # it points at what gave the width: here the --set


def test_deep_check_resolves_keras_names():
    ran = run_cli("validate", CONFIGS / "digits.yaml", "--deep", "--set", "model.layers.0.type=Dnse")
    assert ran.exit_code == 2
    assert "did you mean 'Dense'" in ran.stderr


def test_shallow_validate_resolves_keras_names_too():
    # Without --deep, Keras names are checked against mlcli's Keras index (no TensorFlow import).
    ran = run_cli("validate", CONFIGS / "digits.yaml", "--set", "model.layers.0.type=Dnse")
    assert ran.exit_code == 2, ran
    assert "--set model.layers.0.type=Dnse: model.layers.0.type: 'Dnse' is not a keras.layers class; " \
        "did you mean 'Dense'?" in ran.stderr


def test_deep_check_reads_the_data():
    ran = run_cli("validate", CONFIGS / "digits.yaml", "--deep", "--set", "data.train=missing.csv")
    assert ran.exit_code == 3 and "missing.csv" in ran.stderr


def test_deep_check_of_the_shipped_finetune_config_applies_its_head():
    ran = run_cli("validate", CONFIGS / "digits_finetune.yaml", "--deep")
    assert ran.exit_code == 0, ran
    assert "5 classes" in ran.stderr and "finetune.head applied" in ran.stderr
