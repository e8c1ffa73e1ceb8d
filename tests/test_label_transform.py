"""data.label_transform, regression scores and the same-file warning through the real CLI: a
house-price target around 8 million trains to a sensible error with `standard` (and warns without it);
predictions, evaluate's mae/rmse/r2 and plain Keras are in dollars; a log transform refuses a negative
target by its row; data.test reading data.train's file is a warning recorded in run.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

CONFIG = """
name: house
seed: 1
data:
  train: {train}
  validation: 0.2
  label: {label}
  task: regression
  label_transform: {transform}
{extra}
model:
  layers:
    - {{type: Dense, units: 16, activation: relu}}
    - {{type: Dense, units: {units}}}
optimizer: {{type: adam, learning_rate: 0.01}}
loss: mse
metrics: [mae]
training: {{epochs: {epochs}, batch_size: 32}}
"""


def house_table(path: Path, n: int = 400, seed: int = 0, rooms: bool = False, negative_row: int | None = None) -> Path:
    """Prices around 8 million, linear in three features plus noise of 200,000 (the best possible rmse)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    price = 8e6 + 1.5e6 * x[:, 0] - 1e6 * x[:, 1] + 0.5e6 * x[:, 2] + rng.normal(0, 2e5, n)
    if negative_row is not None:
        price[negative_row - 1] = -5.0
    lines = ["a,b,c,price" + (",rooms" if rooms else "")]
    for i in range(n):
        extra = f",{4 + abs(x[i, 0] - x[i, 2]):.3f}" if rooms else ""
        lines.append(f"{x[i, 0]:.4f},{x[i, 1]:.4f},{x[i, 2]:.4f},{price[i]:.0f}{extra}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_config(tmp: Path, train: Path, *, transform="standard", label="price", units=1, epochs=15, extra="",
                 name="house") -> Path:
    config = tmp / f"{name}.yaml"
    config.write_text(CONFIG.format(train=train, transform=transform, label=label, units=units, epochs=epochs,
                                    extra=extra))
    return config


@pytest.fixture(scope="module")
def house_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("house")
    train = house_table(tmp / "house.csv")
    test = house_table(tmp / "house_test.csv", n=120, seed=5)
    ran = run_cli("train", write_config(tmp, train), "--output", tmp / "run")
    assert ran.exit_code == 0, ran
    return ran, tmp / "run", test


@pytest.mark.slow
def test_standard_transform_trains_an_8_million_target_and_answers_in_dollars(house_run, tmp_path):
    ran, run, test = house_run
    assert "label_transform" not in ran.stderr and "warning" not in ran.stderr  # no scale warning with it
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["label_transform"]["kind"] == "standard"
    assert manifest["label_transform"]["mean"][0] == pytest.approx(8e6, rel=0.05)
    assert manifest["warnings"] == []

    evaluated = run_cli("evaluate", run, "--data", test, "--json", "--plot", tmp_path / "pva.png")
    assert evaluated.exit_code == 0, evaluated
    metrics = json.loads(evaluated.stdout)["metrics"]
    # noise alone is an rmse of 200,000 on a target whose spread is 1.9 million
    assert metrics["rmse"] < 4e5 and metrics["mae"] < 3.2e5 and metrics["r2"] > 0.95, metrics
    assert metrics["loss"] < 0.05  # on the standardised scale, as training logged it
    assert (tmp_path / "pva.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    predicted = run_cli("predict", run, test, "--keep", "price")
    assert predicted.exit_code == 0, predicted
    rows = [line.split(",") for line in predicted.stdout.strip().splitlines()[1:]]
    actual = np.array([float(r[0]) for r in rows])
    guess = np.array([float(r[1]) for r in rows])
    assert 6e6 < guess.mean() < 10e6  # dollars, not standard deviations
    # evaluate's rmse and r2 are those of predict's numbers (scikit-learn's formulas)
    from sklearn.metrics import mean_squared_error, r2_score

    assert metrics["r2"] == pytest.approx(r2_score(actual, guess), abs=1e-4)
    assert metrics["rmse"] == pytest.approx(mean_squared_error(actual, guess) ** 0.5, rel=1e-3)

    import keras  # plain Keras loads the file and outputs dollars too

    model = keras.saving.load_model(run / "model.keras")
    x = np.loadtxt(test, delimiter=",", skiprows=1, usecols=(0, 1, 2), dtype="float32")
    assert np.allclose(np.asarray(model(x[:5])).ravel(), guess[:5], rtol=1e-4)


@pytest.mark.slow
def test_without_a_transform_the_scale_warning_fires_once_and_is_recorded(tmp_path):
    train = house_table(tmp_path / "house.csv", n=120)
    ran = run_cli("train", write_config(tmp_path, train, transform="none", epochs=1), "--output", tmp_path / "run")
    assert ran.exit_code == 0, ran
    assert ran.stderr.count("warning: the regression target 'price'") == 1, ran
    assert "data.label_transform: standard" in ran.stderr
    assert "data.label_transform: standard" in json.loads((tmp_path / "run" / "run.json").read_text())["warnings"][0]


@pytest.mark.slow
def test_several_targets_log_transform_and_the_same_file_warning(tmp_path):
    train = house_table(tmp_path / "house.csv", n=200, rooms=True)
    config = write_config(tmp_path, train, transform="log", label="[price, rooms]", units=2, epochs=2,
                          extra=f"  test: {train}")
    ran = run_cli("train", config, "--output", tmp_path / "run")
    assert ran.exit_code == 0, ran
    assert ran.stderr.count("warning: data.test") == 1 and "same file as data.train" in ran.stderr, ran
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["label_transform"] == {"kind": "log", "formula": "log(1 + y)"}
    assert any(w.startswith("warning: data.test") for w in manifest["warnings"])
    evaluated = run_cli("evaluate", tmp_path / "run", "--json", "--fail-over", "rmse_rooms=1e30")
    assert evaluated.exit_code == 0, evaluated
    metrics = json.loads(evaluated.stdout)["metrics"]
    assert {"rmse", "r2", "rmse_price", "r2_price", "rmse_rooms", "r2_rooms"} <= set(metrics)
    assert metrics["rmse"] == pytest.approx((metrics["rmse_price"] + metrics["rmse_rooms"]) / 2)
    predicted = run_cli("predict", tmp_path / "run", train)
    assert predicted.stdout.splitlines()[0] == "prediction_price,prediction_rooms"
    values = np.array([[float(v) for v in line.split(",")] for line in predicted.stdout.strip().splitlines()[1:]])
    assert (values > -1).all()  # exp(z) - 1: a log model never predicts below -1


def test_log_transform_refuses_a_negative_target_by_its_row(tmp_path):
    train = house_table(tmp_path / "house.csv", n=60, negative_row=17)
    ran = run_cli("train", write_config(tmp_path, train, transform="log", epochs=1), "--output", tmp_path / "run")
    assert ran.exit_code == 3, ran
    assert "row 17" in ran.stderr and "-5.0 is negative" in ran.stderr and "log(1 + y)" in ran.stderr, ran
    assert "Traceback" not in ran.stderr


def test_label_transform_is_for_regression(tmp_path):
    train = house_table(tmp_path / "house.csv", n=20)
    config = write_config(tmp_path, train).read_text().replace("task: regression", "task: classification")
    (tmp_path / "c.yaml").write_text(config)
    ran = run_cli("validate", tmp_path / "c.yaml")
    assert ran.exit_code == 2, ran
    assert "data.label_transform" in ran.stderr and "classification" in ran.stderr
