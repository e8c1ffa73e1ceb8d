"""A typed model encodes its numeric columns together (one fill, one Normalization, one set of
was-missing columns): the body still sees, column for column and in feature order, what each
column's own encoder computed — the fill learned on the training split, the column's normalization
(standard, minmax, none; a constant column scaled by 1), its was-missing column right after it, and
the categorical one-hot between them where the features list puts it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow

CONFIG = """
name: numeric-block
seed: 3
data:
  train: {train}
  validation: null
  label: label
  features:
    - a
    - {{name: color, type: categorical}}
    - b
    - {{name: c, type: numeric, missing: mean, normalize: minmax}}
    - const
    - {{name: d, type: numeric, normalize: none}}
  missing: auto
model:
  layers:
    - {{type: Dense, units: 4, activation: relu}}
    - {{type: Dense, units: 2, activation: softmax}}
training: {{epochs: 1, batch_size: 16}}
"""


def _table(rows: int = 48) -> dict[str, list]:
    rng = np.random.default_rng(11)
    columns: dict[str, list] = {name: [] for name in ("a", "color", "b", "c", "const", "d", "label")}
    for i in range(rows):
        columns["a"].append("" if i % 7 == 3 else f"{rng.normal(50, 10):.3f}")
        columns["color"].append(str(rng.choice(["red", "green", "blue"])))
        columns["b"].append(f"{rng.normal(-2, 0.5):.3f}")
        columns["c"].append("" if i % 5 == 1 else f"{rng.uniform(0, 200):.3f}")
        columns["const"].append("4")
        columns["d"].append("" if i % 6 == 0 else f"{rng.normal(3, 1):.3f}")
        columns["label"].append("yes" if i % 2 else "no")
    return columns


def _numbers(values: list[str]) -> np.ndarray:
    return np.asarray([float(v) if v else np.nan for v in values], dtype=np.float64)


def test_numeric_columns_keep_their_own_encoding_and_place(tmp_path):
    import keras

    table = _table()
    data = tmp_path / "numbers.csv"
    data.write_text(",".join(table) + "\n" + "".join(
        ",".join(table[name][i] for name in table) + "\n" for i in range(len(table["label"]))))
    config = tmp_path / "numbers.yaml"
    config.write_text(CONFIG.format(train=data))
    ran = run_cli("train", config, "--output", tmp_path / "run")
    assert ran.exit_code == 0, ran
    records = {f["name"]: f for f in json.loads((tmp_path / "run" / "run.json").read_text())["features"]}

    # what each numeric column's own encoder computes, in float64 from the training file
    expected = []
    a = _numbers(table["a"])
    a_filled = np.where(np.isnan(a), np.median(a[~np.isnan(a)]), a)
    expected += [(a_filled - a_filled.mean()) / a_filled.std(), np.isnan(a).astype(float)]  # auto: was-missing
    expected.append(None)  # color: the one-hot, checked below
    b = _numbers(table["b"])
    expected.append((b - b.mean()) / b.std())
    c = _numbers(table["c"])
    c_filled = np.where(np.isnan(c), c[~np.isnan(c)].mean(), c)  # missing: mean — no was-missing column
    expected.append((c_filled - c_filled.min()) / (c_filled.max() - c_filled.min()))
    expected.append(np.zeros(len(c)))  # a constant column: minus its mean, scaled by 1
    d = _numbers(table["d"])
    expected += [np.where(np.isnan(d), np.median(d[~np.isnan(d)]), d), np.isnan(d).astype(float)]  # no scaling

    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    features = keras.Model(model.inputs, model.get_layer("mlcli_features").output)
    x = {name: np.asarray(_numbers(table[name]), dtype="float32").reshape(-1, 1) for name in ("a", "b", "c", "const", "d")}
    x["color"] = np.asarray(table["color"], dtype=object).reshape(-1, 1)
    got = np.asarray(features(x), dtype=np.float64)
    width = records["color"]["vocabulary_size"] + 1  # index 0: out of vocabulary
    assert got.shape == (len(a), len(expected) - 1 + width)
    column = 0
    for values in expected:
        if values is None:
            one_hot = got[:, column:column + width]
            assert set(np.unique(one_hot)) == {0.0, 1.0} and np.all(one_hot.sum(axis=1) == 1)
            assert np.all(one_hot[:, 0] == 0)  # every color was in the training vocabulary
            column += width
            continue
        np.testing.assert_allclose(got[:, column], values, rtol=1e-5, atol=1e-5, err_msg=f"feature column {column}")
        column += 1
    # predictions of the saved model are those of the body on these features
    body = model.get_layer("mlcli_body")
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(body(got.astype("float32"))), atol=1e-6)
