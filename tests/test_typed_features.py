"""Typed features through the real CLI: a table with categories, numbers with gaps, true/false, dates
and short text trains with its preprocessing inside model.keras; predict, evaluate, finetune and
plain Keras take the raw columns; run.json records the feature table."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, run_cli

pytestmark = pytest.mark.slow

CONFIG = """
name: mixed
seed: 7
data:
  train: {train}
  validation: {validation}
  label: label
  exclude: [id]
{extra}
model:
  layers:
    - {{type: Dense, units: 8, activation: relu}}
    - {{type: Dense, units: 2, activation: softmax}}
optimizer: {{type: adam, learning_rate: 0.02}}
training: {{epochs: {epochs}, batch_size: 16{training}}}
"""

WORDS = {1: ["slow internet again", "billing error", "never called back"],
         0: ["great service", "happy with it", "fast and reliable"]}


def mixed_rows(n: int = 90, seed: int = 0) -> list[dict]:
    """A small learnable table: the label follows the plan, the review's tone and the charges."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = int(i % 3 == 0)
        plan = ("basic" if label else "premium") if rng.random() < 0.8 else "standard"
        charges = "" if i % 9 == 4 else f"{(80 if label else 40) + rng.normal(0, 5):.2f}"
        rows.append({
            "id": f"C{i:04d}",
            "plan": plan,
            "region": "" if i % 10 == 7 else str(rng.choice(["north", "south", "east"])),
            "charges": charges,
            "auto_pay": "true" if rng.random() < 0.5 else "false",
            "signup": f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "review": f"{rng.choice(WORDS[label])} and {rng.choice(['more words', 'nothing else', 'so on'])} {i}",
            "label": "yes" if label else "no",
        })
    return rows


def table_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def train(tmp_path: Path, rows=None, *, validation="0.25", extra="", epochs=3, training="", name="run",
          args=()):
    data = tmp_path / "mixed.csv"
    data.write_text(table_text(rows if rows is not None else mixed_rows()))
    config = tmp_path / f"{name}.yaml"
    config.write_text(CONFIG.format(train=data, validation=validation, extra=extra, epochs=epochs,
                                    training=training))
    ran = run_cli("train", config, "--output", tmp_path / name, *args)
    assert "Traceback" not in ran.stderr, ran
    return ran, tmp_path / name


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mixed")
    ran, run = train(tmp, epochs=15)
    assert ran.exit_code == 0, ran
    return ran, run, tmp


def test_the_feature_table_is_printed_and_recorded(mixed_run):
    ran, run, _ = mixed_run
    for text in ("plan", "categorical (inferred)", "charges", "median", "was-missing", "date (inferred)",
                 "tokens, tf_idf"):
        assert text in ran.stderr, text
    features = json.loads((run / "run.json").read_text())["features"]
    by_name = {f["name"]: f for f in features}
    assert list(by_name) == ["plan", "region", "charges", "auto_pay", "signup", "review"]  # id excluded
    assert {n: f["type"] for n, f in by_name.items()} == {
        "plan": "categorical", "region": "categorical", "charges": "numeric", "auto_pay": "binary",
        "signup": "date", "review": "text"}
    assert all(f["inferred"] for f in features)
    # statistics of the training split only: 90 rows, 23 held out for validation (25% of each class)
    assert by_name["charges"]["rows"] == 67 and 0 < by_name["charges"]["missing_count"] < 10
    assert by_name["charges"]["indicator"] is True and by_name["plan"]["vocabulary_size"] == 3
    assert by_name["region"]["vocabulary_size"] == 4  # north, south, east and the missing value ""


def test_model_keras_takes_raw_columns_in_plain_keras(mixed_run):
    _, run, _ = mixed_run
    import keras

    model = keras.saving.load_model(run / "model.keras")
    row = {"plan": np.array([["basic"], ["never-seen"]]), "region": np.array([["south"], [""]]),
           "charges": np.array([[85.0], [np.nan]], dtype="float32"),
           "auto_pay": np.array([["true"], [""]]),
           "signup": np.array([[2023, 5, 2, 1], [np.nan] * 4], dtype="float32"),
           "review": np.array([["billing error"], [""]])}
    out = np.asarray(model(row))
    assert out.shape == (2, 2) and np.isfinite(out).all()
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_predict_and_evaluate_read_raw_tables_by_column(mixed_run, tmp_path):
    ran, run, _ = mixed_run
    rows = mixed_rows(12, seed=3)
    rows[0]["plan"] = "gold"  # unseen: the out-of-vocabulary slot
    rows[1]["charges"] = ""  # missing: filled with the training median
    rows[2]["signup"] = ""
    data = tmp_path / "new.csv"
    data.write_text(table_text([{k: r[k] for k in reversed(list(r))} for r in rows]))  # columns in another order
    predicted = run_cli("predict", run, data, "--keep", "id")
    assert predicted.exit_code == 0, predicted
    lines = predicted.stdout.strip().splitlines()
    assert lines[0] == "id,prediction,prob_no,prob_yes" and len(lines) == 13
    assert lines[1].startswith("C0000,")
    parquet = tmp_path / "p.parquet"
    assert run_cli("predict", run, data, "--output", parquet).exit_code == 0
    import pyarrow.parquet as pq

    assert pq.read_table(parquet).num_rows == 12
    evaluated = run_cli("evaluate", run, "--data", data, "--json")
    assert evaluated.exit_code == 0, evaluated
    document = json.loads(evaluated.stdout)
    assert document["samples"] == 12 and 0 <= document["metrics"]["accuracy"] <= 1
    # without --data: the run's own validation split, rebuilt with the run's feature types
    again = run_cli("evaluate", run, "--json")
    assert again.exit_code == 0, again
    assert json.loads(again.stdout)["samples"] == 23


def test_predictions_match_plain_keras_and_the_run_learned(mixed_run):
    _, run, tmp = mixed_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val_accuracy"] >= 0.8, metrics  # plan, review and charges all say the label
    predicted = run_cli("predict", run, tmp / "mixed.csv")
    assert predicted.exit_code == 0, predicted
    probabilities = np.array([float(line.split(",")[2]) for line in predicted.stdout.strip().splitlines()[1:]])
    import keras

    rows = mixed_rows()
    model = keras.saving.load_model(run / "model.keras")
    x = {"plan": np.array([[r["plan"]] for r in rows]), "region": np.array([[r["region"]] for r in rows]),
         "charges": np.array([[float(r["charges"]) if r["charges"] else np.nan] for r in rows], dtype="float32"),
         "auto_pay": np.array([[r["auto_pay"]] for r in rows]),
         "signup": np.array([[*map(int, r["signup"].split("-")), _weekday(r["signup"])] for r in rows], "float32"),
         "review": np.array([[r["review"]] for r in rows])}
    assert np.allclose(np.asarray(model(x))[:, 1], probabilities, atol=1e-5)


def _weekday(text: str) -> int:
    import datetime as dt

    return dt.date.fromisoformat(text).weekday()


def test_vocabularies_and_statistics_come_from_the_training_split_only(tmp_path):
    rows = mixed_rows(60)
    validation = mixed_rows(20, seed=5)
    for row in validation:
        row["plan"] = "platinum"  # only in the validation file
        row["charges"] = "1000"
    (tmp_path / "val.csv").write_text(table_text(validation))
    ran, run = train(tmp_path, rows, validation=tmp_path / "val.csv", epochs=1)
    assert ran.exit_code == 0, ran
    by_name = {f["name"]: f for f in json.loads((run / "run.json").read_text())["features"]}
    assert by_name["plan"]["vocabulary_size"] == 3
    train_charges = [float(r["charges"]) for r in rows if r["charges"]]
    assert by_name["charges"]["statistics"]["max"] == pytest.approx(max(train_charges))
    import keras

    model = keras.saving.load_model(run / "model.keras")
    lookup = next(layer for layer in model.layers if layer.name.endswith("_plan_lookup"))
    counts = {v: sum(r["plan"] == v for r in rows) for v in ("basic", "premium", "standard")}
    expected = sorted(counts, key=lambda v: (-counts[v], v))  # by frequency, then value
    assert lookup.get_vocabulary()[1:] == expected


def test_declared_specs_encodings_and_policies(tmp_path):
    rows = mixed_rows()
    extra = """  features:
    - {name: plan, type: categorical, encoding: embedding, embedding_dim: 3}
    - {name: region, type: categorical, missing: most_frequent}
    - {name: charges, type: numeric, missing: drop, normalize: minmax}
    - auto_pay
    - {name: signup, type: date}
    - {name: review, type: text, output: sequence, sequence_length: 6, max_tokens: 50}"""
    ran, run = train(tmp_path, rows, extra=extra, epochs=1)
    assert ran.exit_code == 0, ran
    manifest = json.loads((run / "run.json").read_text())
    by_name = {f["name"]: f for f in manifest["features"]}
    assert [by_name[n]["inferred"] for n in ("plan", "auto_pay")] == [False, True]
    assert by_name["region"]["missing"] == "most_frequent" and by_name["region"]["vocabulary_size"] == 3
    gaps = sum(1 for r in rows if not r["charges"])
    assert manifest["data"]["train"][0]["dropped"] == {"missing charges": gaps}
    assert f"left out {gaps} row(s) with a missing charges" in ran.stderr
    # predict owes every row a prediction: a missing value of a `missing: drop` feature is an error
    new = mixed_rows(5, seed=9)
    new[3]["charges"] = ""
    (tmp_path / "new.csv").write_text(table_text(new))
    predicted = run_cli("predict", run, tmp_path / "new.csv")
    assert predicted.exit_code == 3, predicted
    assert "column 'charges', row 4: missing value" in predicted.stderr and "Traceback" not in predicted.stderr


def test_missing_labels_dropped_and_counted(tmp_path):
    rows = mixed_rows()
    for i in (2, 5, 8):
        rows[i]["label"] = ""
    ran, run = train(tmp_path, rows, extra="  missing_label: drop", epochs=1)
    assert ran.exit_code == 0, ran
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["data"]["train"][0]["dropped"] == {"missing label": 3}
    assert "left out 3 row(s) with a missing label" in ran.stderr


def test_class_weights_balanced_and_by_label(tmp_path):
    ran, run = train(tmp_path, epochs=1, training=", class_weight: balanced")
    assert ran.exit_code == 0, ran
    weights = json.loads((run / "run.json").read_text())["class_weight"]
    assert set(weights) == {"no", "yes"} and weights["yes"] > 1 > weights["no"]  # a third of the rows are yes
    ran, run = train(tmp_path, epochs=1, training=', class_weight: {"yes": 3}', name="mapped")  # yes: unquoted is YAML's true
    assert ran.exit_code == 0, ran
    assert json.loads((run / "run.json").read_text())["class_weight"] == {"no": 1.0, "yes": 3.0}
    ran, _ = train(tmp_path, epochs=1, training=", class_weight: {maybe: 3}", name="unknown")
    assert ran.exit_code == 2, ran
    assert "'maybe' is not a class of the training data — the classes are 'no', 'yes'" in ran.stderr


def test_finetune_keeps_the_input_block_and_replaces_the_head(mixed_run, tmp_path):
    _, run, tmp = mixed_run
    config = tmp_path / "ft.yaml"
    config.write_text("finetune:\n  freeze: [0]\n  head: {replace: 1, layers: [{type: Dense, units: 2, "
                      "activation: softmax}]}\ntraining: {epochs: 1}\n")
    ran = run_cli("finetune", config, "--from", run, "--output", tmp_path / "ft")
    assert ran.exit_code == 0, ran
    assert "input block" in ran.stderr and "kept from the parent" in ran.stderr
    facts = json.loads((tmp_path / "ft" / "run.json").read_text())["finetune"]
    # the body's first Dense layer (Keras numbers layer names per process: dense, dense_1, ...)
    assert len(facts["frozen"]) == 1 and facts["frozen"][0].split("_")[0] == "dense"
    assert facts["input_block"] == "kept from the parent, frozen"
    predicted = run_cli("predict", tmp_path / "ft", tmp / "mixed.csv")
    assert predicted.exit_code == 0, predicted
    assert len(predicted.stdout.strip().splitlines()) == 91


def test_validate_deep_prints_the_feature_table(tmp_path):
    data = tmp_path / "mixed.csv"
    data.write_text(table_text(mixed_rows()))
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(train=data, validation="0.25", extra="", epochs=1, training=""))
    ran = run_cli("validate", config, "--deep")
    assert ran.exit_code == 0, ran
    assert "deep check passed" in ran.stderr and "6 typed feature column(s)" in ran.stderr
    assert "signup" in ran.stderr and "date (inferred)" in ran.stderr


def test_a_plain_numeric_table_keeps_the_plain_model(tmp_path):
    ran, run = train(tmp_path, [{"id": f"r{i}", "a": str(i % 7), "b": str(i % 5), "label": str(i % 2)}
                                for i in range(40)],
                     extra="", epochs=1)
    assert ran.exit_code == 0, ran
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["features"] == ["a", "b"]  # names: the float path, one Normalization layer
    assert "features\n" not in ran.stderr
    import zipfile

    architecture = json.loads(zipfile.ZipFile(run / "model.keras").read("config.json"))
    assert architecture["class_name"] == "Sequential"
    assert [layer["class_name"] for layer in architecture["config"]["layers"]][:2] == ["InputLayer", "Normalization"]


def test_the_shipped_churn_config_learns(tmp_path):
    ran = run_cli("train", CONFIGS / "churn.yaml", "--output", tmp_path / "churn", "--json")
    assert ran.exit_code == 0, ran
    metrics = json.loads(ran.stdout)["metrics"]
    test_rows = list(csv.DictReader(io.StringIO(_gunzip(Path(__file__).parent.parent / "mlcli" / "datasets"
                                                        / "churn_test.csv.gz"))))
    majority = max(sum(r["churned"] == v for r in test_rows) for v in ("yes", "no")) / len(test_rows)
    assert metrics["test_accuracy"] >= majority + 0.1, (metrics, majority)
    types = {f["name"]: f["type"] for f in json.loads((tmp_path / "churn" / "run.json").read_text())["features"]}
    assert set(types.values()) == {"categorical", "numeric", "binary", "date", "text"}
    assert "customer_id" not in types


def _gunzip(path: Path) -> str:
    import gzip

    return gzip.decompress(path.read_bytes()).decode("utf-8")


def test_a_killed_typed_run_resumes_to_the_same_history(tmp_path):
    from conftest import run_process

    data = tmp_path / "mixed.csv"
    data.write_text(table_text(mixed_rows()))
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(train=data, validation="0.25", extra="", epochs=3, training="")
                      + "runtime: {deterministic: true}\n")
    assert run_process("train", config, "--output", tmp_path / "reference", "--quiet").returncode == 0
    killed = run_process("train", config, "--output", tmp_path / "run", "--quiet",
                         env={"MLCLI_TEST_KILL_AT": "state-before-progress:2"})
    assert killed.returncode != 0
    done = run_process("train", "--resume", tmp_path / "run", "--quiet")
    assert done.returncode == 0, done.stderr

    def history(run):
        return [line.split(",")[:5] for line in (run / "history.csv").read_text().splitlines()]

    assert history(tmp_path / "run") == history(tmp_path / "reference")
