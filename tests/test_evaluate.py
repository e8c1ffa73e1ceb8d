"""`mlcli evaluate` through the real CLI: data sources, JSON shape, numbers that agree with training
and with a hand count, gates, and every error a user can cause (docs/contract.md §1, §2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from evalpredict_runs import digits_table, plain_keras_copy, read_output, trained, write_csv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return trained("digits", tmp_path_factory)


def _json(*args) -> dict:
    ran = run_cli("evaluate", *map(str, args), "--json")
    assert ran.exit_code == 0, ran
    assert ran.exception is None
    return json.loads(ran.stdout)


def _recorded(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def _assert_clean_error(ran, code: int, *texts: str) -> None:
    assert ran.exit_code == code, ran
    assert "Traceback" not in ran.stderr and ran.exception is None, ran
    for text in texts:
        assert text in ran.stderr, ran


# ---- data sources ---------------------------------------------------------------------------------

def test_default_is_the_runs_test_data_and_matches_training(digits):
    doc = _json(digits)
    recorded = _recorded(digits)
    assert doc["data"] == "builtin:digits/test" and doc["source"] == "data.test"
    assert doc["samples"] == 359
    assert doc["checkpoint"] == str(digits / "model.keras")
    assert list(doc["metrics"]) == ["loss", "accuracy"]  # Keras's names, as training logged them
    assert doc["metrics"]["accuracy"] == pytest.approx(recorded["test_accuracy"], abs=1e-6)
    assert doc["metrics"]["loss"] == pytest.approx(recorded["test_loss"], abs=1e-6)


def test_without_test_data_the_validation_split_is_rebuilt_with_the_runs_seed(tmp_path_factory):
    run = trained("digits_val", tmp_path_factory)
    doc = _json(run)
    recorded = _recorded(run)
    manifest = json.loads((run / "run.json").read_text())
    assert doc["source"] == "data.validation"
    assert "validation split" in doc["data"] and "seed 7" in doc["data"]
    assert doc["samples"] == manifest["rows"]["validation"]
    # The same rows as training's last validation pass: the same numbers.
    assert doc["metrics"]["accuracy"] == pytest.approx(recorded["val_accuracy"], abs=1e-6)
    assert doc["metrics"]["loss"] == pytest.approx(recorded["val_loss"], abs=1e-6)


def test_data_option_csv_parquet_and_npz_agree(digits, tmp_path):
    import pyarrow.parquet as pq

    table = digits_table().slice(0, 120)
    csv = write_csv(table, tmp_path / "part.csv")
    parquet = tmp_path / "part.parquet"
    pq.write_table(table, parquet)
    npz = tmp_path / "part.npz"
    x = np.stack([table.column(i).to_numpy() for i in range(64)], axis=1)
    np.savez(npz, x=x, y=table.column("label").to_numpy())
    docs = [_json(digits, "--data", path) for path in (csv, parquet, npz)]
    for doc in docs:
        assert doc["samples"] == 120 and doc["source"] == "--data"
        assert doc["confusion_matrix"] == docs[0]["confusion_matrix"]
        assert doc["metrics"]["accuracy"] == pytest.approx(docs[0]["metrics"]["accuracy"], abs=1e-7)
    assert docs[0]["data"] == str(csv)


def test_data_on_stdin(digits, tmp_path):
    table = digits_table().slice(0, 50)
    csv = write_csv(table, tmp_path / "part.csv")
    from_file = _json(digits, "--data", csv)
    ran = run_cli("evaluate", str(digits), "--data", "-", "--json", input=csv.read_text())
    assert ran.exit_code == 0, ran
    assert json.loads(ran.stdout)["metrics"] == from_file["metrics"]


def test_data_classes_filter_is_applied_to_the_runs_own_test_data(tmp_path_factory):
    run = trained("digits_subset", tmp_path_factory)
    doc = _json(run)
    labels = digits_table().column("label").to_numpy()
    assert doc["samples"] == int(np.isin(labels, [0, 1, 2]).sum())
    assert doc["classes"] == [0, 1, 2] and doc["data_classes"] == [0, 1, 2]
    assert doc["metrics"]["accuracy"] == pytest.approx(_recorded(run)["test_accuracy"], abs=1e-6)
    said = run_cli("evaluate", str(run)).stderr
    assert "only the rows labelled 0, 1, 2 are evaluated (the run's data.classes" in said
    # --data is taken as given: a digit the model never saw is a data error naming it.
    ran = run_cli("evaluate", str(run), "--data", "builtin:digits/test")
    _assert_clean_error(ran, 3, "row 1: label 4 was not among the training classes")


# ---- the document and the numbers -----------------------------------------------------------------

def test_json_shape_and_consistency(digits):
    ran = run_cli("evaluate", str(digits), "--json")
    assert ran.exit_code == 0, ran
    doc = json.loads(ran.stdout)  # stdout holds exactly one JSON document
    assert {"checkpoint", "data", "samples", "metrics", "confusion_matrix", "per_class"} <= set(doc)
    matrix = np.array(doc["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == doc["samples"]
    assert [row["label"] for row in doc["per_class"]] == doc["classes"] == list(range(10))
    assert set(doc["per_class"][0]) == {"label", "precision", "recall", "f1", "support"}
    assert [row["support"] for row in doc["per_class"]] == matrix.sum(axis=1).tolist()
    # The confusion matrix agrees with the accuracy Keras reports.
    assert np.trace(matrix) / matrix.sum() == pytest.approx(doc["metrics"]["accuracy"], abs=1e-6)
    assert "confusion matrix" in ran.stderr  # human tables go to stderr even with --json


def test_human_output_goes_to_stderr(digits):
    ran = run_cli("evaluate", str(digits))
    assert ran.exit_code == 0, ran
    assert ran.stdout == ""
    for text in ("accuracy", "loss", "confusion matrix", "per class", "precision", "recall", "f1", "support"):
        assert text in ran.stderr
    quiet = run_cli("evaluate", str(digits), "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == ""


def test_per_class_numbers_match_a_hand_count(digits, tmp_path):
    table = digits_table().slice(100, 40)
    csv = write_csv(table, tmp_path / "small.csv")
    doc = _json(digits, "--data", csv)
    ran = run_cli("predict", str(digits), str(csv), "--output", str(tmp_path / "p.csv"), "--quiet")
    assert ran.exit_code == 0, ran
    predicted = read_output(tmp_path / "p.csv").column("prediction").to_pylist()
    truth = table.column("label").to_pylist()
    for row in doc["per_class"]:
        c = row["label"]
        tp = sum(1 for t, p in zip(truth, predicted) if t == c and p == c)
        said = sum(1 for p in predicted if p == c)
        real = sum(1 for t in truth if t == c)
        precision = tp / said if said else 0.0
        recall = tp / real if real else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
            (precision, recall, f1, real), abs=1e-12), c
    # The accuracy computed from predict's output is the one evaluate (Keras) reports.
    accuracy = sum(t == p for t, p in zip(truth, predicted)) / len(truth)
    assert accuracy == pytest.approx(doc["metrics"]["accuracy"], abs=1e-6)
    matrix = doc["confusion_matrix"]
    for t, p in zip(truth, predicted):
        matrix[t][p] -= 1
    assert not any(any(row) for row in matrix)


def test_regression_reports_keras_metrics_and_no_matrix(tmp_path_factory):
    run = trained("diabetes", tmp_path_factory)
    doc = _json(run)
    assert list(doc["metrics"]) == ["loss", "mae", "rmse", "r2"]  # rmse and r2 computed by evaluate
    assert doc["metrics"]["mae"] == pytest.approx(_recorded(run)["test_mae"], rel=1e-6)
    assert doc["task"] == "regression" and "confusion_matrix" not in doc and "per_class" not in doc


def test_several_regression_targets_on_the_validation_split(tmp_path_factory):
    run = trained("two_targets", tmp_path_factory)
    doc = _json(run)
    assert doc["source"] == "data.validation" and doc["samples"] == 40
    assert doc["metrics"]["mae"] == pytest.approx(_recorded(run)["val_mae"], rel=1e-6)


def test_string_labels(tmp_path_factory):
    run = trained("animals", tmp_path_factory)
    doc = _json(run)
    assert doc["classes"] == ["cat", "dog", "owl"]
    assert [row["label"] for row in doc["per_class"]] == ["cat", "dog", "owl"]
    assert doc["metrics"]["accuracy"] == pytest.approx(_recorded(run)["test_accuracy"], abs=1e-6)


def test_unseen_string_label_names_label_and_row(tmp_path_factory, tmp_path):
    run = trained("animals", tmp_path_factory)
    lines = (run.parent / "test.csv").read_text().splitlines()
    lines[4] = lines[4].rsplit(",", 1)[0] + ",emu"
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    ran = run_cli("evaluate", str(run), "--data", str(tmp_path / "bad.csv"))
    _assert_clean_error(ran, 3, "row 4", "label 'emu' was not among the training classes", "'cat'")


# ---- checkpoints ------------------------------------------------------------------------------------

def test_keras_file_inside_a_run_uses_the_run(tmp_path_factory):
    run = trained("animals", tmp_path_factory)
    doc = _json(run / "best.keras")
    assert doc["checkpoint"] == str(run / "best.keras")
    assert doc["classes"] == ["cat", "dog", "owl"] and doc["source"] == "data.test"


def test_standalone_keras_file(digits, tmp_path):
    alone = tmp_path / "alone.keras"
    shutil.copy(digits / "model.keras", alone)
    ran = run_cli("evaluate", str(alone))
    _assert_clean_error(ran, 2, "not inside a run directory", "--data")
    doc = _json(alone, "--data", "builtin:digits/test")
    assert doc["metrics"]["accuracy"] == pytest.approx(_recorded(digits)["test_accuracy"], abs=1e-6)
    assert doc["classes"] == list(range(10))


def test_standalone_regression_with_several_outputs(tmp_path_factory, tmp_path):
    run = trained("two_targets", tmp_path_factory)
    # Saved by Keras alone, the file does not say which columns are its targets.
    plain_keras_copy(run / "model.keras", tmp_path / "plain.keras")
    (tmp_path / "d.csv").write_text("a,b,c,label\n0.1,0.2,0.3,1\n0.5,0.1,0.0,2\n")
    ran = run_cli("evaluate", str(tmp_path / "plain.keras"), "--data", str(tmp_path / "d.csv"))
    _assert_clean_error(ran, 3, "the model has 2 outputs but the data has 1 target column(s)")
    # mlcli's model.keras carries them: a copy evaluates the run's data as the run itself does.
    shutil.copy(run / "model.keras", tmp_path / "two.keras")
    copied = _json(tmp_path / "two.keras", "--data", str(run.parent / "train.csv"))
    in_run = _json(run / "model.keras", "--data", str(run.parent / "train.csv"))
    assert copied["samples"] == in_run["samples"] == 200 and copied["metrics"] == in_run["metrics"]


@pytest.mark.parametrize("make, text", [
    (lambda d, t: t / "nope", "not found"),
    (lambda d, t: t, "is not an mlcli run directory"),
    (lambda d, t: _write(t / "x.keras", (d / "model.keras").read_bytes()[:3000]), "not a complete Keras archive"),
    (lambda d, t: _write(t / "x.keras", b"just text"), "not a complete Keras archive"),
    (lambda d, t: _write(t / "model.h5", b"x"), "expected a run directory or a .keras file"),
])
def test_bad_checkpoint_is_exit_2(digits, tmp_path, make, text):
    ran = run_cli("evaluate", str(make(digits, tmp_path)), "--data", "builtin:digits/test")
    _assert_clean_error(ran, 2, text)


def test_run_without_model_says_how_to_finish_it(digits, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(digits, copy)
    (copy / "model.keras").unlink()
    ran = run_cli("evaluate", str(copy))
    _assert_clean_error(ran, 2, "has no model.keras", "--resume", "best.keras")


def _damaged(digits: Path, tmp_path: Path, how: str) -> Path:
    import zipfile

    copy = tmp_path / "run"
    shutil.copytree(digits, copy)
    if how == "run.json":
        (copy / "run.json").write_text("{not json")
    elif how == "labels.json":
        (copy / "labels.json").unlink()
        manifest = json.loads((copy / "run.json").read_text())
        manifest["classes"] = None
        (copy / "run.json").write_text(json.dumps(manifest))
    elif how == "weights":
        with zipfile.ZipFile(digits / "model.keras") as original, \
                zipfile.ZipFile(copy / "model.keras", "w") as broken:
            broken.writestr("config.json", original.read("config.json"))
            broken.writestr("model.weights.h5", b"not hdf5")
    elif how == "no data":
        text = (copy / "config.yaml").read_text()
        text = text.replace("test: builtin:digits/test", "test: null").replace("validation: 0.2", "validation: null")
        (copy / "config.yaml").write_text(text)
    return copy


@pytest.mark.parametrize("how, code, text", [
    ("run.json", 2, "cannot be read"),
    ("labels.json", 2, "a classification run without labels.json"),
    ("weights", 2, "cannot be loaded as a Keras model"),
    ("no data", 2, "has no data.test and no validation split"),
])
def test_damaged_runs(digits, tmp_path, how, code, text):
    _assert_clean_error(run_cli("evaluate", str(_damaged(digits, tmp_path, how))), code, text)


def test_validation_split_of_a_changed_training_file(tmp_path):
    from evalpredict_runs import animals_csv

    animals_csv(tmp_path / "train.csv", 100, seed=9)
    (tmp_path / "c.yaml").write_text(
        "data: {train: train.csv, label: animal}\n"
        "model: {layers: [{type: Dense, units: 3, activation: softmax}]}\ntraining: {epochs: 1}\n"
    )
    assert run_cli("train", str(tmp_path / "c.yaml"), "--output", str(tmp_path / "run"), "--quiet").exit_code == 0
    with open(tmp_path / "train.csv", "a") as handle:
        handle.write("1,1,1,1,cat\n")
    ran = run_cli("evaluate", str(tmp_path / "run"))
    assert ran.exit_code == 0, ran
    assert "changed since the run was trained" in ran.stderr
    text = (tmp_path / "train.csv").read_text().splitlines()
    (tmp_path / "train.csv").write_text("\n".join([text[0] + ",f5"] + [t + ",0" for t in text[1:]]) + "\n")
    _assert_clean_error(run_cli("evaluate", str(tmp_path / "run")), 3, "no longer the run's features")


def test_header_only_data_is_exit_3(digits, tmp_path):
    (tmp_path / "h.csv").write_text(",".join(digits_table().column_names) + "\n")
    ran = run_cli("evaluate", str(digits), "--data", str(tmp_path / "h.csv"))
    _assert_clean_error(ran, 3, "has no data rows to evaluate")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---- gates ----------------------------------------------------------------------------------------

def test_gates(digits):
    ran = run_cli("evaluate", str(digits), "--fail-under", "accuracy=0.999", "--json")
    _assert_clean_error(ran, 5, "accuracy", "below 0.999")
    assert json.loads(ran.stdout)["metrics"]["accuracy"] < 0.999  # the result is still reported
    ran = run_cli("evaluate", str(digits), "--fail-over", "loss=0.0001")
    _assert_clean_error(ran, 5, "loss", "above 0.0001")
    ran = run_cli("evaluate", str(digits), "--fail-under", "accuracy=0.5", "--fail-over", "loss=10")
    assert ran.exit_code == 0, ran


def test_unknown_gate_metric_is_exit_2_before_any_work(digits):
    # The data does not exist: exit 2 (not 3) shows the gate was checked first.
    ran = run_cli("evaluate", str(digits), "--data", "missing.csv", "--fail-under", "val_accuracy=0.5")
    _assert_clean_error(ran, 2, "'val_accuracy'", "loss, accuracy")
    ran = run_cli("evaluate", str(digits), "--fail-under", "accuracy")
    _assert_clean_error(ran, 2, "expected METRIC=NUMBER")


# ---- data errors ----------------------------------------------------------------------------------

def test_unseen_label_names_label_and_row(digits, tmp_path):
    table = digits_table().slice(0, 10)
    labels = table.column("label").to_pylist()
    labels[6] = 11
    import pyarrow as pa

    bad = table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels))
    ran = run_cli("evaluate", str(digits), "--data", str(write_csv(bad, tmp_path / "bad.csv")))
    _assert_clean_error(ran, 3, "row 7", "label 11 was not among the training classes")


def test_missing_feature_and_label_columns(digits, tmp_path):
    table = digits_table().slice(0, 10)
    no_pixel = write_csv(table.drop_columns(["pixel_3_4"]), tmp_path / "a.csv")
    _assert_clean_error(run_cli("evaluate", str(digits), "--data", str(no_pixel)), 3, "'pixel_3_4' not found")
    no_label = write_csv(table.drop_columns(["label"]), tmp_path / "b.csv")
    _assert_clean_error(run_cli("evaluate", str(digits), "--data", str(no_label)), 3,
                        "label column 'label' not found")


def test_bad_values_are_named_by_column_and_row(digits, tmp_path):
    lines = write_csv(digits_table().slice(0, 10), tmp_path / "x.csv").read_text().splitlines()
    cells = lines[3].split(",")
    cells[5] = "five"
    lines[3] = ",".join(cells)
    (tmp_path / "x.csv").write_text("\n".join(lines) + "\n")
    ran = run_cli("evaluate", str(digits), "--data", str(tmp_path / "x.csv"))
    _assert_clean_error(ran, 3, "column 'pixel_0_5', row 3", "'five' is not a number")


def test_missing_data_file_is_exit_3(digits):
    _assert_clean_error(run_cli("evaluate", str(digits), "--data", "nowhere.csv"), 3, "nowhere.csv", "not found")


def test_plot_writes_a_confusion_matrix_png(digits, tmp_path):
    from test_plots import assert_confusion_drawn, assert_sensible_png

    plot = tmp_path / "confusion.png"
    ran = run_cli("evaluate", digits, "--data", "builtin:digits/test", "--plot", plot)
    assert ran.exit_code == 0, ran
    assert_sensible_png(plot)
    assert_confusion_drawn(plot)
    assert f"confusion matrix written to {plot}" in ran.stderr


@pytest.mark.parametrize("name, text", [("matrix.jpg", "expected a .png"), ("missing/dir.png", "does not exist")])
def test_plot_path_problems_are_usage_errors_before_any_work(digits, tmp_path, name, text):
    ran = run_cli("evaluate", digits, "--plot", tmp_path / name)
    _assert_clean_error(ran, 2, text)
    assert not (tmp_path / name).exists()
