"""mlcli explain (docs/contract.md §10) through the real CLI, on data whose answer is known:

- a table where only c3 and c7 of ten columns decide the label: both methods rank them first;
- iris: the petal measurements outrank the sepal ones;
- a typed table where a categorical column decides the label: it ranks first (a raw column shuffled);
- images where a bright square in the top-left corner means class 1: most attribution is there.

The image run is trained by mlcli on class folders of PNGs (data.image), so the whole path runs:
image loader, the image input block (float32 pixels in [0, 255], rescaled inside the model),
evaluate's data, the forward pass, gradients and saliency.png.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow

DECIDING = {"c3", "c7"}


def _table_csv(path: Path, rows: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 10))
    y = ((x[:, 3] + x[:, 7]) > 0).astype(int)
    lines = [",".join([f"c{i}" for i in range(10)] + ["label"])]
    lines += [",".join(f"{v:.4f}" for v in row) + f",{k}" for row, k in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _train(folder: Path, config: str, *extra: str) -> Path:
    (folder / "config.yaml").write_text(config)
    ran = run_cli("train", folder / "config.yaml", "--output", folder / "run", "--quiet", *extra)
    assert ran.exit_code == 0, ran
    return folder / "run"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("explain-table")
    _table_csv(folder / "train.csv", 600, 1)
    _table_csv(folder / "test.csv", 300, 2)
    return _train(folder, f"""name: synthetic
seed: 3
data: {{train: {folder / 'train.csv'}, validation: 0.2, test: {folder / 'test.csv'}, label: label}}
model:
  layers:
    - {{type: Dense, units: 16, activation: relu}}
    - {{type: Dense, units: 2, activation: softmax}}
loss: sparse_categorical_crossentropy
optimizer: {{type: adam, learning_rate: 0.02}}
training: {{epochs: 8, batch_size: 32}}
""")


def _json(*args) -> dict:
    ran = run_cli("explain", *map(str, args), "--json")
    assert ran.exit_code == 0, ran
    return json.loads(ran.stdout)


def _clean_error(ran, code: int, *texts: str) -> None:
    assert ran.exit_code == code, ran
    assert "Traceback" not in ran.stderr and ran.exception is None, ran
    for text in texts:
        assert text in ran.stderr, ran


def test_permutation_ranks_the_two_deciding_columns_first(synthetic, tmp_path):
    out = tmp_path / "out"
    ran = run_cli("explain", synthetic, "--output", out, "--json")
    assert ran.exit_code == 0, ran
    doc = json.loads(ran.stdout)  # exactly one document on stdout
    assert doc["method"] == "permutation" and doc["rows"] == 300
    ranked = [r["feature"] for r in doc["importance"]]
    assert set(ranked[:2]) == DECIDING, doc["importance"]
    means = {r["feature"]: r["mean"] for r in doc["importance"]}
    # shuffling a deciding column costs a lot of accuracy; the others cost about nothing
    assert min(means["c3"], means["c7"]) > 0.15
    assert max(v for k, v in means.items() if k not in DECIDING) < 0.05
    assert all(len(r["repeats"]) == 5 and r["std"] >= 0 for r in doc["importance"])
    assert doc["metric"]["name"] == "accuracy" and doc["metric"]["higher_is_better"] is True
    # the unshuffled accuracy is evaluate's accuracy on the same rows
    evaluated = json.loads(run_cli("evaluate", synthetic, "--json").stdout)
    assert doc["metric"]["value"] == pytest.approx(evaluated["metrics"]["accuracy"], abs=1e-6)
    assert (out / "importance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    # the table on stderr, sorted: the first ranked row names a deciding column
    table = ran.stderr[ran.stderr.index("when the column is shuffled"):]
    assert max(table.index(" c3 "), table.index(" c7 ")) < min(table.index(f" c{i} ") for i in (0, 1, 2, 4, 5)), table
    # layer statistics and costs ride along
    acts = {a["layer"]: a for a in doc["layers"]["activations"]}
    assert len(acts) == 2 and all(0.0 <= a["zero_fraction"] <= 1.0 for a in acts.values())
    relu = next(a for a in acts.values() if a["relu"])
    assert relu["units"] == 16 and 0 <= relu["dead_units"] <= 16
    assert {w["layer"] for w in doc["layers"]["weights"]} == set(acts)
    assert doc["flops"]["forward_flops_per_example"] == 2 * (10 * 16 + 16 * 2)


def test_permutation_is_seeded_and_batched_without_changing_the_answer(synthetic, tmp_path, monkeypatch):
    from mlcli.explain import permutation
    from mlcli.use.inference import Inference

    args = (synthetic, "--rows", 120, "--repeats", 2, "--batch-size", 16, "--output", tmp_path / "a")
    first = _json(*args)["importance"]
    assert _json(*args)["importance"] == first  # same seed, same numbers
    assert _json(*args, "--seed", 11)["importance"] != first

    seen = []
    outputs = Inference.outputs

    def spy(self, x):
        seen.append(len(x))
        return outputs(self, x)

    monkeypatch.setattr(Inference, "outputs", spy)
    monkeypatch.setattr(permutation, "CHUNK_ROWS", 32)
    chunked = _json(*args)["importance"]
    # never more than a chunk of rows goes to the model at once (no shuffled copy of the data) ...
    assert max(seen) == 32 and len(seen) == (1 + 10 * 2) * 4  # (unshuffled + 10 columns x 2 repeats) x 4 chunks
    # ... and chunking does not change a single number
    assert chunked == first


def test_loss_as_the_metric_rises_when_a_deciding_column_is_shuffled(synthetic, tmp_path):
    doc = _json(synthetic, "--metric", "loss", "--repeats", 2, "--output", tmp_path)
    assert doc["metric"]["higher_is_better"] is False
    assert set(r["feature"] for r in doc["importance"][:2]) == DECIDING
    assert doc["importance"][1]["mean"] > 0.1  # bigger = more important, whichever way the metric points


def test_gradients_rank_the_deciding_columns_first_and_add_up(synthetic, tmp_path):
    doc = _json(synthetic, "--method", "gradients", "--rows", 20, "--output", tmp_path)
    assert set(r["feature"] for r in doc["importance"][:2]) == DECIDING, doc["importance"]
    att = doc["attributions"]
    assert att["steps"] == 50 and "training mean" in att["baseline"] and len(att["rows"]) == 20
    for row in att["rows"]:  # completeness: the attributions add up to f(x) - f(baseline)
        assert sum(row["values"]) == pytest.approx(row["f_x"] - row["f_baseline"], abs=0.02)
        assert row["gap"] == pytest.approx(abs(sum(row["values"]) - (row["f_x"] - row["f_baseline"])), abs=1e-4)
    saved = np.load(tmp_path / "attributions.npz")
    assert saved["attributions"].shape == (20, 10)
    assert (tmp_path / "importance.png").is_file()


def test_completeness_fails_with_a_bad_integral():
    """The completeness check can fail: a Riemann sum with the wrong spacing does not add up."""
    import keras

    from mlcli.explain.gradients import integrated_gradients

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1, activation="sigmoid")])
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32) * 3
    base = np.zeros(3, dtype=np.float32)
    f = lambda v: np.asarray(model(v))[:, 0]  # noqa: E731
    want = f(x) - f(np.zeros_like(x))
    got = integrated_gradients(model, x, base, np.zeros(4, dtype=np.int32)).sum(axis=1)
    assert np.allclose(got, want, atol=2e-3)
    few = integrated_gradients(model, x, base, np.zeros(4, dtype=np.int32), steps=1).sum(axis=1)
    assert not np.allclose(few, want, atol=2e-3)  # one trapezoid is not enough: the check would flag it


@pytest.fixture(scope="module")
def iris(tmp_path_factory) -> Path:
    from sklearn.datasets import load_iris

    folder = tmp_path_factory.mktemp("explain-iris")
    data = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    order = np.random.default_rng(0).permutation(len(data.target))
    lines = [",".join(names + ["species"])]
    lines += [",".join(f"{v:.1f}" for v in data.data[i]) + f",{data.target_names[data.target[i]]}" for i in order]
    (folder / "iris.csv").write_text("\n".join(lines) + "\n")
    return _train(folder, f"""name: iris
seed: 5
data: {{train: {folder / 'iris.csv'}, validation: 0.3, label: species}}
model:
  layers:
    - {{type: Dense, units: 16, activation: relu}}
    - {{type: Dense, units: 3, activation: softmax}}
optimizer: {{type: adam, learning_rate: 0.05}}
training: {{epochs: 20, batch_size: 16}}
""")


def test_iris_petals_outrank_sepals(iris, tmp_path):
    doc = _json(iris, "--repeats", 5, "--output", tmp_path)
    assert doc["source"] == "data.validation" and doc["rows"] == 45
    means = {r["feature"]: r["mean"] for r in doc["importance"]}
    assert min(means["petal_length"], means["petal_width"]) > max(means["sepal_length"], means["sepal_width"]), means


@pytest.fixture(scope="module")
def typed(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("explain-typed")
    rng = np.random.default_rng(4)
    colours = rng.choice(["red", "green", "blue"], size=300)
    noise = rng.normal(size=(300, 2))
    lines = ["colour,size,weight,label"]
    lines += [f"{c},{a:.3f},{b:.3f},{'yes' if c == 'red' else 'no'}" for c, (a, b) in zip(colours, noise)]
    (folder / "typed.csv").write_text("\n".join(lines) + "\n")
    return _train(folder, f"""name: typed
seed: 2
data:
  train: {folder / 'typed.csv'}
  validation: 0.3
  label: label
  features: [{{name: colour, type: categorical}}, size, weight]
model:
  layers:
    - {{type: Dense, units: 8, activation: relu}}
    - {{type: Dense, units: 2, activation: softmax}}
optimizer: {{type: adam, learning_rate: 0.05}}
training: {{epochs: 6, batch_size: 32}}
""")


def test_typed_table_shuffles_raw_columns_and_refuses_gradients(typed, tmp_path):
    doc = _json(typed, "--repeats", 3, "--output", tmp_path)
    ranked = [r["feature"] for r in doc["importance"]]
    assert ranked[0] == "colour" and set(ranked) == {"colour", "size", "weight"}
    assert doc["importance"][0]["mean"] > 0.2
    # the body's layers are what the statistics describe (the input block is mlcli's)
    assert len(doc["layers"]["activations"]) == 2
    # the body's first Dense sees the encoded inputs: colour one-hot (3 values + out-of-vocabulary), size, weight
    assert [layer["flops"] for layer in doc["flops"]["layers"]] == [2 * 6 * 8, 2 * 8 * 2]
    ran = run_cli("explain", typed, "--method", "gradients", "--output", tmp_path)
    _clean_error(ran, 2, "--method gradients", "use --method permutation")


def _corner_folder(root: Path, per_class: int, seed: int) -> Path:
    """16x16 grey PNGs of dark noise; class `corner` has a bright 4x4 square in the top-left 6x6 corner."""
    from mlcli.datasets.make_shapes import write_png

    rng = np.random.default_rng(seed)
    for name in ("corner", "plain"):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.uniform(0, 40, size=(16, 16))
            if name == "corner":
                a, b = rng.integers(0, 3, size=2)
                pixels[a:a + 4, b:b + 4] = 255
            write_png(root / name / f"{index:03d}.png", pixels.astype(np.uint8))
    return root


@pytest.fixture(scope="module")
def corner_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("explain-images")
    train = _corner_folder(folder / "train", 100, 1)
    test = _corner_folder(folder / "test", 12, 2)
    return _train(folder, f"""name: corner
seed: 0
data: {{train: {train}, test: {test}, validation: 0.2, image: {{size: [16, 16], channels: 1}}}}
model:
  layers:
    - {{type: Conv2D, filters: 4, kernel_size: 3, activation: relu}}
    - {{type: MaxPooling2D, pool_size: 2}}
    - {{type: Flatten}}
    - {{type: Dense, units: 2, activation: softmax}}
optimizer: {{type: adam, learning_rate: 0.01}}
training: {{epochs: 6, batch_size: 16}}
""")


def test_image_attribution_mass_is_in_the_bright_corner(corner_run, tmp_path):
    doc = _json(corner_run, "--rows", 24, "--output", tmp_path)
    assert doc["method"] == "gradients" and "zeros" in doc["attributions"]["baseline"]
    rows = doc["attributions"]["rows"]
    square = [r for r in rows if r["target"] == "corner"]
    assert len(square) >= 6
    for row in square:
        magnitude = np.abs(np.array(row["values"]))[..., 0]
        assert magnitude[:8, :8].sum() / magnitude.sum() > 0.5  # the quarter where the square is
        assert row["gap"] < 0.02
    assert (tmp_path / "saliency.png").read_bytes()[:4] == b"\x89PNG"
    cost = {layer["type"]: layer["flops"] for layer in doc["flops"]["layers"]}
    assert cost["Conv2D"] == 2 * 14 * 14 * 4 * 9 and cost["Dense"] == 2 * 196 * 2 and cost["MaxPooling2D"] == 0
    ran = run_cli("explain", corner_run, "--method", "permutation")
    _clean_error(ran, 2, "--method permutation", "use --method gradients")


def test_bad_input_is_a_clear_error(synthetic, tmp_path):
    _clean_error(run_cli("explain", synthetic, "--rows", 5000), 2, "--rows 5000", "has only 300 row(s)")
    _clean_error(run_cli("explain", synthetic, "--metric", "auc"), 2, "'auc'", "expected one of accuracy, loss")
    _clean_error(run_cli("explain", synthetic, "--metric", "mae"), 2, "classification model")
    _clean_error(run_cli("explain", synthetic, "--method", "shap"), 2, "--method shap", "permutation, gradients")
    standalone = tmp_path / "copied.keras"
    standalone.write_bytes((synthetic / "model.keras").read_bytes())
    _clean_error(run_cli("explain", standalone), 2, "not inside a run directory", "--data")
    ran = run_cli("explain", synthetic, "--rows", 5000, "--json")
    assert ran.exit_code == 2 and json.loads(ran.stdout)["exit_code"] == 2


def test_train_and_validate_deep_show_flops_and_memory(synthetic):
    doc = json.loads((synthetic / "run.json").read_text())
    cost = doc["cost"]
    forward = 2 * (10 * 16 + 16 * 2)
    assert cost["forward_flops_per_example"] == forward
    assert cost["training_flops_per_epoch"] == 3 * forward * doc["rows"]["train"] == 3 * forward * 480
    assert cost["training_memory_bytes"] > 4 * 210  # at least the weights
    assert [row["flops"] for row in doc["layers"]] == [2 * 10 * 16, 2 * 16 * 2]
    ran = run_cli("validate", synthetic / "config.yaml", "--deep")
    assert ran.exit_code == 0, ran
    assert "forward: 384 FLOPs per example" in ran.stderr
    assert f"(3 x forward x {doc['rows']['train']:,} rows)" in ran.stderr and "estimated training memory" in ran.stderr


def test_dead_relu_units_are_counted(synthetic, tmp_path):
    """Four units of the ReLU layer made dead by hand (zero weights, a large negative bias): exactly
    those four are reported dead, and at least their share of the outputs is zero."""
    import keras

    model = keras.saving.load_model(synthetic / "model.keras", compile=False)
    dense = next(layer for layer in model.layers if type(layer).__name__ == "Dense")
    kernel, bias = dense.get_weights()
    kernel[:, :4], bias[:4] = 0.0, -1000.0
    dense.set_weights([kernel, bias])
    model.save(tmp_path / "dead.keras")
    test = synthetic.parent / "test.csv"
    doc = _json(tmp_path / "dead.keras", "--data", test, "--repeats", 1, "--output", tmp_path / "out")
    relu = next(a for a in doc["layers"]["activations"] if a["relu"])
    assert relu["dead_units"] == 4 and relu["units"] == 16
    assert relu["zero_fraction"] >= 4 / 16
    assert relu["dead_fraction"] == pytest.approx(0.25)


def test_regression_metrics_are_evaluates_and_errors_rise(tmp_path_factory, tmp_path):
    from conftest import CONFIGS

    run = tmp_path_factory.mktemp("explain-diabetes") / "run"
    ran = run_cli("train", CONFIGS / "diabetes.yaml", "--output", run, "--set", "training.epochs=2", "--quiet")
    assert ran.exit_code == 0, ran
    evaluated = json.loads(run_cli("evaluate", run, "--json").stdout)["metrics"]
    mae = _json(run, "--repeats", 2, "--output", tmp_path / "mae")
    assert mae["metric"]["name"] == "mae" and mae["metric"]["higher_is_better"] is False
    assert mae["metric"]["value"] == pytest.approx(evaluated["mae"], rel=1e-5)
    means = [r["mean"] for r in mae["importance"]]
    assert means == sorted(means, reverse=True) and means[0] > 0
    loss = _json(run, "--repeats", 1, "--metric", "loss", "--output", tmp_path / "loss")
    assert loss["metric"]["value"] == pytest.approx(evaluated["loss"], rel=1e-5)
    rmse = _json(run, "--repeats", 1, "--metric", "rmse", "--output", tmp_path / "rmse")
    assert rmse["metric"]["value"] == pytest.approx(evaluated["loss"] ** 0.5, rel=1e-5)  # the loss is mse
