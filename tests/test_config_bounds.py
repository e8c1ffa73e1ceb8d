"""Values a config or a flag can hold, checked where the user wrote them (CONTRACT §2, §3): the seed's
range, finite numbers, run names taken from file names, `mlcli schema` refusing exactly what `validate`
refuses, and messages that name the flag or key the user typed."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import CONFIGS, run_cli

TRAIN = "data:\n  train: builtin:digits/train\n"


def _clean_config_error(ran, *texts: str) -> None:
    assert ran.exit_code == 2, ran
    assert ran.exception is None and "Traceback" not in ran.stderr, ran
    for text in texts:
        assert text in ran.stderr, ran


# ---- the seed -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", ["-1", "99999999999999999999", str(2**32)])
def test_a_seed_flag_out_of_range_is_a_config_error_naming_the_flag(tmp_path, seed):
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--seed", seed, "--output", tmp_path / "run")
    _clean_config_error(ran, f"--seed {seed}: seed:", "4294967295" if seed != "-1" else "greater than or equal to 0")
    assert "--set seed" not in ran.stderr
    assert not (tmp_path / "run").exists()


def test_a_seed_in_the_file_out_of_range_is_located(write):
    config = write("c.yaml", TRAIN + "seed: 99999999999999999999\n")
    _clean_config_error(run_cli("validate", config), "c.yaml:3: seed: got 99999999999999999999")


def test_the_largest_seed_is_valid(write):
    ran = run_cli("validate", CONFIGS / "tiny.yaml", "--set", f"seed={2**32 - 1}")
    assert ran.exit_code == 0, ran


# ---- numbers that must be finite ------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["optimizer.learning_rate", "training.early_stopping.min_delta"])
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_infinite_or_nan_numbers_are_refused(key, value):
    sets = ["--set", f"{key}={value}"]
    if key.startswith("training.early_stopping"):
        sets = ["--set", "training.early_stopping={monitor: val_loss}", *sets]
    _clean_config_error(run_cli("validate", CONFIGS / "tiny.yaml", *sets), f"{key}:")


# ---- run names from file names ---------------------------------------------------------------------------

@pytest.mark.parametrize("file, name", [
    ("my config.yaml", "my-config"), ("réseau.yaml", "réseau"), ("a+b.yaml", "a-b"), ("数据.yaml", "数据"),
    ("(draft) v2.yaml", "draft-v2"), ("plain-name_1.2.yaml", "plain-name_1.2"),
])
def test_a_config_file_name_a_directory_should_not_hold_gives_a_safe_run_name(write, file, name):
    config = write(file, TRAIN)
    ran = run_cli("validate", config, "--print")
    assert ran.exit_code == 0, ran
    assert yaml.safe_load(ran.stdout)["name"] == name
    assert "cannot name a run directory" not in ran.stderr


@pytest.mark.slow
def test_a_config_file_with_a_space_trains(tmp_path):
    config = tmp_path / "my tiny config.yaml"
    config.write_text((CONFIGS / "tiny.yaml").read_text().replace("name: tiny\n", ""))
    ran = run_cli("train", config, "--output", tmp_path / "out", "--quiet", "--set", "training.epochs=1")
    assert ran.exit_code == 0, ran
    assert yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())["name"] == "my-tiny-config"


@pytest.mark.parametrize("name", ["my run", "../../escape", ".hidden", "a/b"])
def test_a_run_name_the_user_wrote_is_still_checked_where_it_was_written(write, name):
    config = write("c.yaml", f"name: {json.dumps(name)}\n" + TRAIN)
    _clean_config_error(run_cli("validate", config), "c.yaml:1: name:", "cannot name a run directory")


def test_a_run_name_may_use_letters_beyond_ascii(write):
    assert run_cli("validate", write("c.yaml", "name: réseau-1\n" + TRAIN)).exit_code == 0


# ---- messages that name what the user typed -----------------------------------------------------------------

def test_a_bad_device_flag_is_reported_as_the_flag(tmp_path):
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--device", "tpu", "--output", tmp_path / "run")
    _clean_config_error(ran, "--device tpu: runtime.device: 'tpu' is not a device")
    assert "--set runtime.device" not in ran.stderr


def test_a_bad_device_flag_with_json_names_the_flag(tmp_path):
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--device", "tpu", "--json", "--output", tmp_path / "run")
    assert ran.exit_code == 2, ran
    problems = json.loads(ran.stdout)["problems"]
    assert [(p["source"], p["key"]) for p in problems] == [("--device tpu", "runtime.device")]


@pytest.mark.parametrize("value", ["*.csv", "@data.csv", "!data", "`data`"])
def test_a_set_value_yaml_cannot_read_says_how_to_quote_it(value):
    ran = run_cli("validate", CONFIGS / "tiny.yaml", "--set", f"data.train={value}")
    _clean_config_error(ran, "data.train:", f"""hint: to pass it as text, quote the value inside the flag: """
                                           f"""--set 'data.train="{value}"'""")


def test_the_quoted_form_the_hint_gives_works():
    ran = run_cli("validate", CONFIGS / "tiny.yaml", "--set", 'data.train="*.csv"', "--print")
    assert ran.exit_code == 0, ran
    assert yaml.safe_load(ran.stdout)["data"]["train"].endswith("*.csv")


@pytest.mark.slow
def test_data_classes_naming_an_absent_class_says_which(write, tmp_path):
    rows = "\n".join(f"{i % 3},{(i * 7) % 5},{i % 2}" for i in range(40))
    data = write("d.csv", "a,b,label\n" + rows + "\n")
    config = write("c.yaml", f"data: {{train: {data}, classes: [0, 9]}}\n"
                             "model: {layers: [{type: Dense, units: 2, activation: softmax}]}\n")
    ran = run_cli("train", config, "--output", tmp_path / "run")
    assert ran.exit_code == 3, ran
    assert "of data.classes [0, 9], only 0 has rows" in ran.stderr and "no row is labelled 9" in ran.stderr
    assert "Traceback" not in ran.stderr


# ---- mlcli schema refuses what validate refuses ------------------------------------------------------------

@pytest.fixture(scope="module")
def schema_validator():
    import jsonschema

    ran = run_cli("schema")
    assert ran.exit_code == 0, ran
    schema = json.loads(ran.stdout)
    return jsonschema.validators.validator_for(schema)(schema)


_DATA = {"train": "builtin:digits/train"}
# Each value is refused by `mlcli validate`; the schema an editor reads must flag it too.
REFUSED = {
    "negative seed": {"seed": -1},
    "seed past 2**32-1": {"seed": 99999999999999999999},
    "validation 1.0": {"data": {**_DATA, "validation": 1.0}},
    "validation 0": {"data": {**_DATA, "validation": 0}},
    "validation negative": {"data": {**_DATA, "validation": -0.2}},
    "name ../../escape": {"name": "../../escape"},
    "name with a space": {"name": "my run"},
    "name starting with a dot": {"name": ".hidden"},
    "learning rate 0": {"optimizer": {"learning_rate": 0}},
    "learning rate negative": {"optimizer": {"learning_rate": -0.1}},
    "steps_per_execution 0": {"training": {"steps_per_execution": 0}},
    "jit_compile a word": {"training": {"jit_compile": "xla"}},
    "jit_compile a number": {"training": {"jit_compile": 1}},
    "label list empty": {"data": {**_DATA, "label": []}},
    "label listed twice": {"data": {**_DATA, "label": ["a", "a"]}},
    "features list empty": {"data": {**_DATA, "features": []}},
    "feature listed twice": {"data": {**_DATA, "features": ["a", "a"]}},
    "device tpu": {"runtime": {"device": "tpu"}},
    "device cpu:0": {"runtime": {"device": "cpu:0"}},
    "layer type an import path": {"model": {"layers": [{"type": "os.system"}]}},
    "loss an import path": {"loss": "os.system"},
    "loss type an import path": {"loss": {"type": "a.b"}},
    "metric an import path": {"metrics": ["a.b"]},
    "metric type an import path": {"metrics": [{"type": "a.b"}]},
    "schedule type an import path": {"optimizer": {"learning_rate": {"type": "a.b"}}},
    "empty selector": {"finetune": {"freeze": [""]}},
    "empty extends": {"extends": ""},
}
# Each value is accepted by `mlcli validate`; the schema must not flag it.
ACCEPTED = {
    "largest seed": {"seed": 2**32 - 1},
    "name beyond ASCII": {"name": "réseau_2"},
    "one selector, not a list": {"finetune": {"freeze": 0, "unfreeze": "dense*"}},
    "steps_per_execution auto": {"training": {"steps_per_execution": "auto"}},
    "jit_compile true": {"training": {"jit_compile": True}},
    "validation a path": {"data": {**_DATA, "validation": "val.csv"}},
    "learning rate schedule": {"optimizer": {"learning_rate": {"type": "CosineDecay", "decay_steps": 10,
                                                               "initial_learning_rate": 0.1}}},
}


def _validate(write, document: dict):
    return run_cli("validate", write("c.yaml", yaml.safe_dump({"data": _DATA, **document}, allow_unicode=True)))


@pytest.mark.parametrize("document", REFUSED.values(), ids=REFUSED.keys())
def test_the_schema_refuses_what_validate_refuses(write, schema_validator, document):
    ran = _validate(write, document)
    assert ran.exit_code == 2, ran  # validate refuses it ...
    errors = list(schema_validator.iter_errors({"data": _DATA, **document}))
    assert errors, f"mlcli schema accepts {document}, which validate refuses:\n{ran.stderr}"  # ... and so does the schema


@pytest.mark.parametrize("document", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_the_schema_accepts_what_validate_accepts(write, schema_validator, document):
    ran = _validate(write, document)
    assert ran.exit_code == 0, ran
    assert not [e.message for e in schema_validator.iter_errors({"data": _DATA, **document})]
