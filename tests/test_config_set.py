"""`--set KEY=VALUE` overrides and `validate --print` through the real CLI (docs/contract.md §1, §3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import CONFIGS, Ran, run_cli

DIGITS = CONFIGS / "digits.yaml"


def printed(*sets: str, config: Path = DIGITS) -> dict:
    """`mlcli validate CONFIG --set ... --print`, parsed as plain YAML."""
    args = ["validate", config, "--print"]
    for assignment in sets:
        args += ["--set", assignment]
    ran = run_cli(*args)
    assert ran.exit_code == 0, ran
    assert "Traceback" not in ran.stderr
    return yaml.safe_load(ran.stdout)


def set_error(*sets: str, config: Path = DIGITS) -> Ran:
    args = ["validate", config]
    for assignment in sets:
        args += ["--set", assignment]
    ran = run_cli(*args)
    assert ran.exit_code == 2, ran
    assert ran.exception is None, ran
    assert "Traceback" not in ran.stderr, ran
    assert ran.stderr.startswith("config error"), ran
    return ran


def test_set_an_integer():
    assert printed()["training"]["epochs"] == 10
    assert printed("training.epochs=3")["training"]["epochs"] == 3


def test_set_is_yaml_typed():
    config = printed("training.epochs=3", "data.shuffle=false", "name=quick", "training.early_stopping=null")
    assert config["training"]["epochs"] == 3 and isinstance(config["training"]["epochs"], int)
    assert config["data"]["shuffle"] is False
    assert config["name"] == "quick"
    assert config["training"]["early_stopping"] is None


def test_set_a_list_item_by_index():
    config = printed("model.layers.0.units=128")
    assert config["model"]["layers"][0] == {"type": "Dense", "units": 128, "activation": "relu"}
    assert config["model"]["layers"][1]["units"] == 64  # the others are untouched


def test_set_a_list_item_by_negative_index():
    config = printed("model.layers.-1.activation=sigmoid")
    assert config["model"]["layers"][2]["activation"] == "sigmoid"
    assert config["model"]["layers"][0]["activation"] == "relu"


def test_set_a_whole_list():
    assert printed("finetune.freeze=[0,1]")["finetune"]["freeze"] == [0, 1]
    assert printed("metrics=[accuracy, auc]")["metrics"] == ["accuracy", "auc"]


def test_set_a_mapping_value():
    config = printed("training.early_stopping={monitor: val_accuracy, patience: 2}")
    assert config["training"]["early_stopping"]["monitor"] == "val_accuracy"
    assert config["training"]["early_stopping"]["patience"] == 2


def test_set_inside_a_null_section_creates_it():
    config = printed("training.early_stopping.patience=5")
    assert config["training"]["early_stopping"]["patience"] == 5
    assert config["training"]["early_stopping"]["monitor"] == "val_loss"  # schema default


@pytest.mark.parametrize("written", ["1e-3", "1E-3", "0.001"])
def test_set_scientific_notation_is_a_float(written):
    rate = printed(f"optimizer.learning_rate={written}")["optimizer"]["learning_rate"]
    assert isinstance(rate, float) and rate == pytest.approx(0.001)


def test_later_set_wins():
    assert printed("training.epochs=3", "training.epochs=4")["training"]["epochs"] == 4


def test_set_a_data_path_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = printed("data.train=data/train.csv", "data.test=builtin:digits/test")
    assert config["data"]["train"] == str(tmp_path / "data" / "train.csv")
    assert config["data"]["test"] == "builtin:digits/test"


def test_set_can_supply_a_missing_required_key(write):
    path = write("partial.yaml", "training:\n  epochs: 1\n")
    assert printed("data.train=builtin:digits/train", config=path)["data"]["train"] == "builtin:digits/train"


# ---- errors -------------------------------------------------------------------------------------

def test_set_unknown_key():
    ran = set_error("training.epoch=3")
    assert "--set training.epoch=3: training.epoch: unknown key" in ran.stderr
    assert "did you mean 'epochs'?" in ran.stderr
    assert "digits.yaml" not in ran.stderr  # the file is not to blame


def test_set_unknown_section():
    ran = set_error("trainig.epochs=3")
    assert "--set trainig.epochs=3: trainig:" in ran.stderr
    assert "did you mean 'training'?" in ran.stderr


def test_set_bad_value_is_blamed_on_the_set():
    ran = set_error("training.epochs=many")
    assert "--set training.epochs=many: training.epochs: got 'many' (a string) — expected an integer" in ran.stderr


def test_set_bad_enum_value():
    ran = set_error("runtime.precision=fp16")
    assert "--set runtime.precision=fp16: runtime.precision: got 'fp16'" in ran.stderr


def test_set_index_out_of_range():
    ran = set_error("model.layers.5.units=1")
    assert "--set model.layers.5.units=1: model.layers.5.units: index 5 is out of range" in ran.stderr
    assert "model.layers has 3 item(s) (0 to 2)" in ran.stderr


def test_set_index_into_an_empty_list():
    ran = set_error("finetune.freeze.0=1")
    assert "index 0 is out of range — finetune.freeze has 0 item(s)" in ran.stderr
    assert "finetune.freeze=[...]" in ran.stderr


@pytest.mark.parametrize("assignment", ["training.epochs", "=3", ""])
def test_set_without_key_or_equals(assignment):
    ran = set_error(assignment)
    assert f"--set {assignment}: expected KEY=VALUE, e.g. --set training.epochs=3" in ran.stderr


def test_set_empty_key_part():
    ran = set_error("training..epochs=3")
    assert "training..epochs: empty part in the key" in ran.stderr


@pytest.mark.parametrize("assignment, holder", [
    ("training.epochs.x=3", "training.epochs"),
    ("data.train.path=x.csv", "data.train"),
    ("model.layers.0.units.value=3", "model.layers.0.units"),
    ("optimizer.learning_rate.0=1", "optimizer.learning_rate"),
])
def test_set_inside_a_scalar(assignment, holder):
    ran = set_error(assignment)
    key = assignment.split("=")[0]
    assert f"--set {assignment}: {key}: {holder} holds a single value, so it has no keys to set" in ran.stderr
    assert "digits.yaml" not in ran.stderr


def test_set_key_on_a_list():
    ran = set_error("model.layers.units=3")
    assert "model.layers is a list — expected an index such as model.layers.0" in ran.stderr


def test_set_index_on_a_mapping():
    ran = set_error("training.0=3")
    assert "training is a mapping, not a list" in ran.stderr


def test_set_bad_yaml_value():
    ran = set_error("finetune.freeze=[0,1")
    assert "--set finetune.freeze=[0,1: finetune.freeze: YAML syntax error" in ran.stderr


def test_set_python_tag_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    ran = set_error(f"name=!!python/object/apply:os.system ['touch {marker}']")
    assert "is not allowed" in ran.stderr
    assert not marker.exists()


def test_set_problems_and_file_problems_together(write):
    path = write("bad.yaml", "data:\n  train: builtin:digits/train\ntraining:\n  batch_size: -1\n")
    ran = set_error("training.epochs=0", config=path)
    assert "2 problems" in ran.stderr
    assert "bad.yaml:4: training.batch_size:" in ran.stderr
    assert "--set training.epochs=0: training.epochs:" in ran.stderr


# ---- validate --print round trip ----------------------------------------------------------------

def _round_trip(tmp_path: Path, config: Path, *sets: str) -> tuple[str, str]:
    args = ["validate", config, "--print"]
    for assignment in sets:
        args += ["--set", assignment]
    first = run_cli(*args)
    assert first.exit_code == 0, first
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(first.stdout)
    second = run_cli("validate", resolved, "--print")
    assert second.exit_code == 0, second
    return first.stdout, second.stdout


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_print_round_trips(tmp_path, config):
    first, second = _round_trip(tmp_path, config)
    assert first == second
    assert yaml.safe_load(first)["name"] == config.stem


def test_print_round_trips_with_sets_and_awkward_values(tmp_path, write):
    config = write("odd.yaml", """\
name: '1e3'
seed: 0
data:
  train: data/train.csv
  validation: valid.csv
  label: ['1e5', 'yes', 'null', '0x10']
  task: regression
model:
  layers:
    - {type: Dense, units: 8, activation: relu, name: 'on'}
    - {type: Dense, units: 2}
optimizer:
  type: sgd
  momentum: 0.9
  learning_rate: {type: ExponentialDecay, initial_learning_rate: 1e-2, decay_steps: 100, decay_rate: 0.5}
loss: mse
metrics: [mae, {type: MeanSquaredError, name: 'mse 2'}]
training:
  early_stopping: {monitor: val_mae, patience: 2}
finetune:
  freeze: [0, 'dense*']
""")
    first, second = _round_trip(tmp_path, config, "training.epochs=3", "optimizer.momentum=1e-1")
    assert first == second
    data = yaml.safe_load(first)
    assert data["name"] == "1e3"
    assert data["data"]["label"] == ["1e5", "yes", "null", "0x10"]
    assert data["model"]["layers"][0]["name"] == "on"
    assert data["optimizer"]["momentum"] == 0.1
    assert data["training"]["epochs"] == 3
    assert data["data"]["train"] == str(Path(config).parent / "data" / "train.csv")
