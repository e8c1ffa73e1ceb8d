"""`mlcli schema` (the config's JSON Schema, for editors) and README's generated config reference:
both come from the validator's own pydantic schema, every field is described, every shipped config
and starter validates, and README fails this suite when it drifts from the schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CONFIGS, REPO, run_cli

TEMPLATES = sorted((REPO / "mlcli" / "templates").glob("*.yaml"))
SHIPPED = sorted(CONFIGS.glob("*.yaml")) + TEMPLATES


def _schema() -> dict:
    ran = run_cli("schema")
    assert ran.exit_code == 0, ran
    return json.loads(ran.stdout)  # stdout holds the JSON document and nothing else


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = _schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


KERAS_OBJECTS = ("LayerSpec", "ScheduleSpec", "OptimizerConfig", "LossSpec", "MetricSpec")


def test_schema_prints_the_validators_schema():
    from mlcli.config.schema import Config

    schema = _schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["title"] == "mlcli config"
    pydantic = _editor_defs(Config.model_json_schema()["$defs"])
    # Every section is the validator's own; the Keras objects also get the Keras index's classes.
    assert {k: v for k, v in schema["$defs"].items() if k in pydantic and k not in KERAS_OBJECTS} == \
        {k: v for k, v in pydantic.items() if k not in KERAS_OBJECTS}
    for name in KERAS_OBJECTS:
        keras_object, plain = schema["$defs"][name], pydantic[name]
        assert {k: keras_object[k] for k in plain if k != "properties"} == \
            {k: v for k, v in plain.items() if k != "properties"}
        assert set(keras_object["properties"]) == set(plain["properties"]) and keras_object["allOf"]
    properties = Config.model_json_schema()["properties"]
    assert {k: v for k, v in schema["properties"].items() if k not in ("loss", "metrics")} == \
        {k: v for k, v in properties.items() if k not in ("loss", "metrics")}


def _editor_defs(defs: dict) -> dict:
    # The one difference: data.train is not demanded in every file (extends / the parent run give it).
    defs = json.loads(json.dumps(defs))
    defs["DataConfig"].pop("required")
    return defs


def _properties(schema: dict):
    """(where, name, property, definitions) for every property of the schema, at any depth."""
    defs = schema.get("$defs", {})
    for where, node in [("<root>", schema), *defs.items()]:
        for name, prop in node.get("properties", {}).items():
            yield where, name, prop, defs


def test_every_field_has_a_description():
    schema = _schema()
    missing = []
    for where, name, prop, defs in _properties(schema):
        text = prop.get("description")
        if not text and "$ref" in prop:  # pydantic leaves a section's own docstring on its definition
            text = defs[prop["$ref"].rsplit("/", 1)[-1]].get("description")
        if not (text or "").strip():
            missing.append(f"{where}.{name}")
    assert not missing, f"fields without a description: {missing}"
    assert not [name for name, node in schema["$defs"].items() if not node.get("description")]
    assert all(prop.get("description") for prop in schema["properties"].values())  # hover text at the top too
    assert sum(1 for _ in _properties(schema)) > 40  # the walk really visits every section


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_and_starter_validates_against_the_schema(validator, path):
    document = yaml.safe_load(path.read_text())
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors, errors


def test_the_schema_flags_what_the_validator_refuses(validator):
    bad = {"data": {"train": "x.csv", "validaton": 0.2}, "training": {"epochs": "ten", "batch_size": 0},
           "runtime": {"precision": "half"}}
    messages = sorted(e.message for e in validator.iter_errors(bad))
    assert any("'validaton' was unexpected" in m for m in messages), messages
    assert any("'ten' is not of type 'integer'" in m for m in messages), messages
    assert any("0 is less than the minimum of 1" in m for m in messages), messages
    assert any("'half' is not one of" in m for m in messages), messages


def _errors(validator, document: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(document)]


def test_the_schema_knows_every_keras_layer_and_its_arguments(validator):
    schema = _schema()
    layer_types = schema["$defs"]["LayerSpec"]["properties"]["type"]["enum"]
    assert {"Dense", "Conv2D", "LSTM", "Embedding", "MultiHeadAttention"} <= set(layer_types)
    conv2d = [b["then"] for b in schema["$defs"]["LayerSpec"]["allOf"]
              if "Conv2D" in [b["if"]["properties"]["type"].get("const")] + b["if"]["properties"]["type"].get("enum", [])]
    assert len(conv2d) == 1 and conv2d[0]["additionalProperties"] is False and conv2d[0]["required"] == ["filters",
                                                                                                         "kernel_size"]
    assert list(conv2d[0]["properties"])[:4] == ["type", "filters", "kernel_size", "strides"]  # in Keras's order
    assert conv2d[0]["properties"]["strides"]["default"] == [1, 1]
    data = {"train": "x.csv"}
    good = {"type": "Conv2D", "filters": 8, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "relu"}
    assert not _errors(validator, {"data": data, "model": {"layers": [good, {"type": "Flatten"}]}})
    typo = {"type": "Conv2D", "filters": 8, "kernal_size": 3}
    errors = _errors(validator, {"data": data, "model": {"layers": [typo]}})
    assert "model.layers.0: Additional properties are not allowed ('kernal_size' was unexpected)" in errors, errors
    for bad in ({"type": "Dence", "units": 3}, {"type": "Dense", "units": "many"}, {"type": "Dense", "units": 0},
                {"type": "Dense", "units": 3, "activation": "relux"}, {"type": "Dropout", "rate": 1.5},
                {"type": "Conv2D", "filters": 8, "kernel_size": 3, "padding": "vaild"}, {"type": "Lambda"}):
        assert _errors(validator, {"data": data, "model": {"layers": [bad]}}), bad
    head = {"replace": 1, "layers": [{"type": "Dense", "unitz": 3}]}
    assert _errors(validator, {"data": data, "finetune": {"head": head}})


def test_the_schema_knows_optimizers_schedules_losses_and_metrics(validator):
    data = {"train": "x.csv"}
    schedule = {"type": "CosineDecay", "initial_learning_rate": 0.1, "decay_steps": 100}
    good = {"data": data, "optimizer": {"type": "SGD", "momentum": 0.9, "learning_rate": schedule},
            "loss": {"type": "Huber", "delta": 2.0}, "metrics": ["accuracy", "mae", {"type": "AUC", "curve": "PR"}]}
    assert not _errors(validator, good)
    assert not _errors(validator, {"data": data, "optimizer": {"type": "ADAM", "beta_1": 0.8}, "loss": "mse"})
    assert not _errors(validator, {"data": data, "optimizer": {"beta_1": 0.8}})  # the default type: adam
    for bad in ({"optimizer": {"type": "adamm"}}, {"optimizer": {"learnin_rate": 0.1}},
                {"optimizer": {"type": "sgd", "beta_1": 0.9}},
                {"optimizer": {"learning_rate": {"type": "CosineDecay", "initial_learning_rate": 0.1}}},
                {"loss": "categorical_crossentropi"}, {"loss": {"type": "Huber", "delt": 1}},
                {"metrics": ["acuracy"]}, {"metrics": [{"type": "AUC", "curve": "ROCC"}]}):
        assert _errors(validator, {"data": data, **bad}), bad


def test_the_schema_stays_small_enough_for_editors():
    # yaml-language-server reads it at every start; it is about 400 kB as `mlcli schema` prints it.
    assert len(run_cli("schema").stdout.encode()) < 600_000


def test_a_file_that_extends_another_needs_no_data_section(validator):
    assert not list(validator.iter_errors({"extends": "base.yaml", "training": {"epochs": 3}}))
    assert not list(validator.iter_errors({"data": {"validation": 0.1}}))


@pytest.mark.slow
@pytest.mark.parametrize("args", [["schema"], ["init", "INIT"]], ids=["schema", "init"])
def test_schema_and_init_never_import_tensorflow(tmp_path, args):
    args = [str(tmp_path) if a == "INIT" else a for a in args]
    code = ("import sys, runpy; sys.argv = ['mlcli', *sys.argv[1:]]; code = 0\n"
            "try:\n    runpy.run_module('mlcli', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as exc:\n    code = exc.code\n"
            "print('imported:', sorted(m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules),"
            " file=sys.stderr)\nsys.exit(code)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "imported: []" in done.stderr, done.stderr


# ---- README's config reference --------------------------------------------------------------------

def test_readme_config_reference_matches_the_schema():
    from mlcli.config.reference import readme_section, render_reference

    section = readme_section((REPO / "README.md").read_text())
    assert section is not None, "README.md lost its config-reference markers"
    assert section == render_reference(), (
        "README's config reference is out of date: run `python -m mlcli.config.reference --write README.md`")


def test_the_reference_lists_every_key_of_the_schema():
    from mlcli.config.reference import render_reference
    from mlcli.config.schema import Config

    table = render_reference()
    keys = {line.split("`")[1] for line in table.splitlines()[2:]}
    for section, field in Config.model_fields.items():
        model = getattr(field.annotation, "model_fields", None)
        if model:
            for name in model:  # a key, or a section whose own keys are listed (training.checkpoint.mode)
                key = f"{section}.{name}"
                assert key in keys or any(k.startswith(key + ".") for k in keys), key
        else:
            assert section in keys, section
    assert {"model.layers[].type", "optimizer.*", "training.early_stopping.patience", "finetune.head.replace"} <= keys
    # the value a config really gets when it leaves a key out (a section default wins over its field's)
    assert "| `training.checkpoint.mode` | auto \\| min \\| max | min |" in table
    assert "| `data.train` | string | required |" in table


def test_the_reference_script_checks_and_rewrites_a_readme(tmp_path):
    from mlcli.config.reference import END, START, main, readme_section, render_reference

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{START}\n| stale |\n{END}\n\nafter\n")
    assert main(["--check", str(readme)]) == 1
    assert main(["--write", str(readme)]) == 0
    text = readme.read_text()
    assert readme_section(text) == render_reference() and text.endswith(f"{END}\n\nafter\n")
    assert main(["--check", str(readme)]) == 0
    assert main(["--bogus"]) == 2


def test_readme_shows_the_editor_header_and_completion():
    text = (REPO / "README.md").read_text()
    assert "# yaml-language-server: $schema=mlcli.schema.json" in text
    assert "mlcli schema > mlcli.schema.json" in text
    assert "mlcli --install-completion" in text
    assert "--install-completion" in run_cli("--help").stdout  # Typer's own completion is enabled


def test_readme_documents_every_history_column_train_writes():
    # The columns of a real history.csv header (epoch, loss, metrics, val_ versions, learning_rate,
    # seconds) each have a row in README's column-by-column table.
    text = (REPO / "README.md").read_text()
    for column in ("`epoch`", "`loss`", "`<metric>`", "`val_loss`, `val_<metric>`", "`learning_rate`", "`seconds`",
                   "`test_loss`, `test_<metric>`", "tensorboard --logdir runs/digits/logs"):
        assert column in text, column
    assert Path(REPO / "mlcli" / "templates" / "__init__.py").is_file()
