"""mlcli's Keras index (mlcli/config/keras_index.json.gz): made from the installed Keras by
`make keras-index`, it is what `mlcli validate` and train check Keras names and arguments against
before TensorFlow is imported. It must be the installed Keras's, name what mlcli resolves with Keras
loaded, and give way to Keras itself when it is out of date."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest
from conftest import CONFIGS, REPO, run_cli

from mlcli.config import keras_checks, keras_index, keras_index_build
from mlcli.config.keras_index import INDEX_FILE, installed_keras, read_index
from mlcli.config.keras_rules import REFUSED


def _arguments(kind: str, name: str) -> dict[str, dict]:
    return {a["name"]: a for a in read_index().arguments(kind, name)}


def test_the_shipped_index_is_for_the_installed_keras():
    index = read_index()
    assert index.keras == installed_keras(), "the Keras index is out of date: run `make keras-index`"
    assert keras_index.is_current(index)


def test_the_index_names_what_configs_name():
    index = read_index()
    for kind, names in {"layers": ["Dense", "Conv2D", "Dropout", "BatchNormalization", "LSTM", "Embedding"],
                        "optimizers": ["Adam", "SGD", "RMSprop", "AdamW"],
                        "schedules": ["CosineDecay", "ExponentialDecay", "PiecewiseConstantDecay"],
                        "losses": ["CategoricalCrossentropy", "Huber"], "metrics": ["AUC", "Precision"],
                        "initializers": ["HeNormal"], "regularizers": ["L2"], "constraints": ["MaxNorm"]}.items():
        assert set(names) <= set(index.class_names(kind)), kind
    assert {"categorical_crossentropy", "mse", "CategoricalCrossentropy"} <= set(index.names("losses"))
    assert {"accuracy", "mae", "auc", "AUC"} <= set(index.names("metrics"))
    assert {"relu", "softmax", "linear"} <= set(index.names("activations"))
    assert {"he_normal", "glorot_uniform", "zeros"} <= set(index.names("initializers"))
    assert {"float32", "mixed_float16"} <= set(index.names("dtypes"))
    assert {"ResNet50", "MobileNetV2"} <= set(index.data["applications"])
    assert "weights" in {a["name"] for a in index.data["applications"]["ResNet50"]["arguments"]}


def test_arguments_include_those_a_class_passes_to_its_base_with_defaults_and_value_rules():
    dense = _arguments("layers", "Dense")
    assert list(dense)[:2] == ["units", "activation"]
    assert {"name", "dtype", "trainable", "autocast", "activity_regularizer"} <= set(dense)  # through **kwargs
    assert "input_shape" not in dense  # Keras pops it from **kwargs, mlcli never passes it
    assert dense["units"]["required"] and dense["use_bias"]["default"] is True
    assert "text" in dense["units"]["refuses"] and "negative" in dense["units"]["refuses"]
    assert dense["activation"]["text"] == "activations" and dense["dtype"]["text"] == "dtypes"
    conv = _arguments("layers", "Conv2D")
    assert conv["padding"]["text"] == ["valid", "same"] and conv["padding"]["ignore_case"]
    assert conv["rank"]["set_by_class"]  # Conv2D passes rank=2 to its base itself
    assert conv["strides"]["default"] == [1, 1] and conv["strides"]["numeric_default"] == 1
    assert _arguments("optimizers", "Adam")["beta_1"]["default"] == 0.9


def test_the_index_is_small_package_data():
    assert INDEX_FILE.stat().st_size < 100_000
    assert '"mlcli.config" = ["keras_index.json.gz"]' in (REPO / "pyproject.toml").read_text()
    assert "keras-index:" in (REPO / "Makefile").read_text()


@pytest.mark.slow
def test_regenerating_the_index_gives_the_shipped_file(tmp_path):
    # A fresh process: Keras's global state (a mixed-precision policy other tests set) cannot leak in.
    fresh = tmp_path / "keras_index.json.gz"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "mlcli.config.keras_index_build", "--output", str(fresh)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1200, check=False)
    assert done.returncode == 0, done.stderr
    if fresh.read_bytes() != INDEX_FILE.read_bytes():
        new, old = (json.loads(gzip.decompress(p.read_bytes())) for p in (fresh, INDEX_FILE))
        changed = [f"{kind}.{name}" for kind in new["classes"] for name in new["classes"][kind]
                   if new["classes"][kind][name] != old["classes"].get(kind, {}).get(name)]
        pytest.fail(f"the shipped Keras index differs from the installed Keras {new['keras']} (shipped: "
                    f"{old['keras']}; changed: {changed[:20]}, names equal: {new['names'] == old['names']}): "
                    "run `make keras-index`")


@pytest.mark.slow
def test_the_index_names_what_model_build_resolves_with_keras():
    from mlcli import runtime

    runtime.import_tensorflow()
    import keras

    from mlcli.config.keras_rules import public_classes
    from mlcli.model.layers import layer_classes

    index = read_index()
    assert sorted(layer_classes()) == sorted(index.class_names("layers"))
    optimizers = public_classes(keras.optimizers, keras.optimizers.Optimizer)
    assert sorted(optimizers) == sorted(index.class_names("optimizers"))
    for name in index.names("losses"):
        keras.losses.get(name)  # raises for a name Keras would refuse
    for name in index.names("metrics"):
        keras.metrics.get(name)
    for refused in ("acc", "crossentropy", "categorical_crossentropi"):
        assert refused not in index.names("metrics") + index.names("losses")


@pytest.mark.slow
def test_an_index_for_another_keras_gives_way_to_keras_itself(monkeypatch, write):
    config = write("c.yaml", "data: {train: x.csv}\nmodel:\n  layers:\n    - {type: Dense, units: many}\n"
                             "    - {type: Dropout, rate: 1.5, seed: x}\noptimizer: {type: adamm}\n")
    expected = run_cli("validate", config)
    assert expected.exit_code == 2 and "4 problems" in expected.stderr, expected
    for module in (keras_index, keras_index_build):
        monkeypatch.setattr(module, "installed_keras", lambda: "0.0.1")
    keras_checks.keras_index.cache_clear()
    try:
        first, second = run_cli("validate", config), run_cli("validate", config)
        assert keras_checks.keras_index().keras == "0.0.1"  # the index read from Keras itself
    finally:
        keras_checks.keras_index.cache_clear()
    assert first.exit_code == second.exit_code == 2
    note = f"note: mlcli's Keras index is out of date: it was made for Keras {read_index().keras} but Keras 0.0.1 " \
        "is installed"
    assert first.stderr.startswith(note) and note not in second.stderr  # said once
    assert "Keras names are checked with Keras itself" in first.stderr.split("\n", 1)[0]
    assert first.stderr.split("\n", 1)[1] == second.stderr == expected.stderr  # and the same problems found


def test_the_editor_schema_is_the_shipped_index_even_out_of_date(monkeypatch):
    monkeypatch.setattr(keras_index, "installed_keras", lambda: "0.0.1")
    ran = run_cli("schema")
    assert ran.exit_code == 0 and json.loads(ran.stdout)["$defs"]["LayerSpec"]["allOf"]
    assert f"Keras 0.0.1 is installed (`make keras-index` updates it): the schema describes Keras " \
        f"{read_index().keras}" in ran.stderr


def test_refused_classes_are_in_keras_but_not_in_the_editor_schema():
    schema = json.loads(run_cli("schema").stdout)
    layer_types = schema["$defs"]["LayerSpec"]["properties"]["type"]["enum"]
    assert "Dense" in layer_types and not set(REFUSED["layers"]) & set(layer_types)
    assert set(REFUSED["layers"]) <= set(read_index().class_names("layers"))


def test_validate_stays_fast():
    # The index is read once per process; validate of a shipped config never imports TensorFlow.
    code = ("import sys, time; t = time.perf_counter(); from mlcli.config import load_config, check_config\n"
            f"check_config(load_config({str(CONFIGS / 'digits.yaml')!r}))\n"
            "print(round(time.perf_counter() - t, 3), 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                          check=True)
    seconds, tensorflow, keras = done.stdout.split()
    assert (tensorflow, keras) == ("False", "False")
    assert float(seconds) < 5  # generous for a loaded CI machine; about 0.3 s on a quiet one
