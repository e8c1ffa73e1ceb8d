"""finetune selectors reach a typed model's input encoders by column: input:<column> unfreezes an
embedding (the rest of the input block stays the parent's), says so when there is nothing to train,
and an unknown column is exit 2 with the closest name — in finetune and in validate alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from test_typed_features import CONFIG, mixed_rows, table_text

pytestmark = pytest.mark.slow

FEATURES = """  features:
    - {name: plan, type: categorical, encoding: embedding, embedding_dim: 3}
    - {name: charges, type: numeric}
    - region
"""


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parent")
    data = tmp / "mixed.csv"
    data.write_text(table_text(mixed_rows(60)))
    config = tmp / "parent.yaml"
    config.write_text(CONFIG.format(train=data, validation="null", epochs=1, training="", extra=FEATURES))
    ran = run_cli("train", config, "--output", tmp / "run")
    assert ran.exit_code == 0, ran
    return tmp / "run", tmp


def _finetune(parent_run: Path, tmp_path: Path, finetune: str, name: str = "ft"):
    config = tmp_path / f"{name}.yaml"
    config.write_text(f"finetune: {finetune}\ntraining: {{epochs: 1, batch_size: 16}}\n")
    return run_cli("finetune", config, "--from", parent_run, "--output", tmp_path / name)


def _weights(run: Path) -> dict:
    import keras

    model = keras.saving.load_model(run / "model.keras")
    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            out[layer.name] = [np.asarray(layer.mean), np.asarray(layer.variance)]
        elif layer.name.startswith("mlcli_") and layer.get_weights():
            out[layer.name] = [np.asarray(w) for w in layer.get_weights()]
    return out


def test_unfreezing_an_input_trains_its_embedding_only(parent, tmp_path):
    run, _ = parent
    ran = _finetune(run, tmp_path, "{freeze: [0], unfreeze: ['input:plan']}")
    assert ran.exit_code == 0, ran
    assert "input:plan" in ran.stderr and "trainable (unfrozen)" in ran.stderr  # the layer table's encoder row
    facts = json.loads((tmp_path / "ft" / "run.json").read_text())["finetune"]
    assert facts["input_block"] == "kept from the parent, frozen but input:plan (unfrozen)"
    rows = {(row["name"], row["type"]): row["state"] for row in facts["inputs"]}
    assert rows[("input:plan", "Embedding")] == "trainable (unfrozen)"
    assert rows[("input:charges", "Normalization")] == "kept from the parent"
    before, after = _weights(run), _weights(tmp_path / "ft")
    embedding = next(name for name in before if name.endswith("_embedding"))
    normalize = next(name for name in before if name.endswith("_normalize"))
    assert not np.allclose(before[embedding][0], after[embedding][0])  # trained on the new data
    for b, a in zip(before[normalize], after[normalize]):
        np.testing.assert_array_equal(b, a)  # statistics: the parent's, untouched


def test_the_input_block_stays_frozen_without_an_input_selector(parent, tmp_path):
    run, _ = parent
    ran = _finetune(run, tmp_path, "{freeze: [0], unfreeze: ['input:charges']}")
    assert ran.exit_code == 0, ran
    assert "input:charges has nothing to train" in ran.stderr
    before, after = _weights(run), _weights(tmp_path / "ft")
    embedding = next(name for name in before if name.endswith("_embedding"))
    np.testing.assert_array_equal(before[embedding][0], after[embedding][0])


def test_an_unknown_input_column_is_exit_2_with_the_closest_name(parent, tmp_path):
    run, tmp = parent
    ran = _finetune(run, tmp_path, "{unfreeze: ['input:plann']}")
    assert ran.exit_code == 2, ran
    assert "'plann' is not an input column of the model" in ran.stderr
    assert "did you mean input:plan?" in ran.stderr and "Traceback" not in ran.stderr
    # validate judges the same selector by data.features
    config = tmp_path / "v.yaml"
    config.write_text(CONFIG.format(train=tmp / "mixed.csv", validation="null", epochs=1, training="",
                                    extra=FEATURES) + "finetune: {unfreeze: ['input:plann']}\n")
    checked = run_cli("validate", config)
    assert checked.exit_code == 2, checked
    assert "did you mean input:plan?" in checked.stderr
    config.write_text(config.read_text().replace("input:plann", "input:plan"))
    assert run_cli("validate", config).exit_code == 0


def test_an_input_selector_on_a_plain_model_is_exit_2(tmp_path):
    data = tmp_path / "plain.csv"
    data.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    config = tmp_path / "plain.yaml"
    config.write_text(CONFIG.format(train=data, validation="null", epochs=1, training="", extra="")
                      .replace("  exclude: [id]\n", ""))
    assert run_cli("train", config, "--output", tmp_path / "run").exit_code == 0
    ran = _finetune(tmp_path / "run", tmp_path, "{unfreeze: ['input:a']}")
    assert ran.exit_code == 2, ran
    assert "has no typed input block" in ran.stderr
