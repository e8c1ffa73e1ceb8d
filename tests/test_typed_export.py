"""mlcli export of typed models: the SavedModel takes the raw columns by name (text as tf.string,
dates as ISO text) and matches model.keras; TFLite and ONNX take a typed model of numbers and dates,
and refuse text lookups with exit 2 naming the columns and the format that takes them."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from test_typed_features import CONFIG, mixed_rows, table_text

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    rows = mixed_rows(48)
    rows[5]["signup"] = ""  # a missing date: NaN parts inside, "" for the SavedModel
    (tmp / "mixed.csv").write_text(table_text(rows))
    config = tmp / "mixed.yaml"
    config.write_text(CONFIG.format(train=tmp / "mixed.csv", validation="null", epochs=1, training="", extra=""))
    ran = run_cli("train", config, "--output", tmp / "run")
    assert ran.exit_code == 0, ran
    return tmp / "run", tmp


@pytest.fixture(scope="module")
def numbers(tmp_path_factory):
    """A typed model of numbers with gaps (median fill + was-missing column) and a date: no text."""
    tmp = tmp_path_factory.mktemp("numbers")
    rng = np.random.default_rng(0)
    lines = ["a,b,day,label"]
    for i in range(60):
        a = "" if i % 7 == 3 else f"{rng.normal():.3f}"
        lines.append(f"{a},{rng.normal(5, 2):.3f},2024-{1 + i % 12:02d}-{1 + i % 27:02d},{i % 2}")
    (tmp / "numbers.csv").write_text("\n".join(lines) + "\n")
    config = tmp / "numbers.yaml"
    config.write_text(CONFIG.format(train=tmp / "numbers.csv", validation="null", epochs=1, training="",
                                    extra="  features: [a, b, {name: day, type: date}]")
                      .replace("  exclude: [id]\n", ""))
    ran = run_cli("train", config, "--output", tmp / "run")
    assert ran.exit_code == 0, ran
    assert json.loads((tmp / "run" / "run.json").read_text())["features"][0]["indicator"] is True
    return tmp / "run", tmp


def _raw_columns(path: Path) -> dict:
    """The CSV's columns as a user would pass them: text as text, numbers as floats (NaN if blank)."""
    rows = list(csv.DictReader(path.open()))
    return {name: [row[name] for row in rows] for name in rows[0]}


def test_savedmodel_takes_raw_columns_by_name(mixed, tmp_path):
    import keras
    import tensorflow as tf

    run, tmp = mixed
    out = tmp_path / "sm"
    ran = run_cli("export", run, "--format", "savedmodel", "--output", out, "--json")
    assert ran.exit_code == 0, ran
    signature = json.loads((out / "signature.json").read_text())
    inputs = {c["column"]: c for c in signature["input"]["columns"]}
    assert inputs["plan"]["dtype"] == "string" and inputs["review"]["dtype"] == "string"
    assert inputs["signup"]["dtype"] == "string" and "ISO date" in inputs["signup"]["takes"]
    assert inputs["charges"]["dtype"] == "float32"
    assert signature["parity"]["rows"] == 48 and signature["parity"]["max_abs_diff"] <= 1e-5

    raw = _raw_columns(tmp / "mixed.csv")
    serve = tf.saved_model.load(str(out)).signatures["serving_default"]
    feed = {name: tf.constant(np.asarray(raw[name], dtype=object).reshape(-1, 1))
            for name in ("plan", "region", "auto_pay", "signup", "review")}
    feed["charges"] = tf.constant(np.asarray([float(v) if v else np.nan for v in raw["charges"]],
                                             dtype=np.float32).reshape(-1, 1))
    exported = next(iter(serve(**feed).values())).numpy()

    def parts(text: str):
        if not text:
            return [np.nan] * 4
        day = dt.date.fromisoformat(text)
        return [day.year, day.month, day.day, day.weekday()]

    model = keras.saving.load_model(run / "model.keras")
    keras_x = {name: np.asarray(values).reshape(-1, 1) for name, values in
               ((k, v.numpy()) for k, v in feed.items()) if name != "signup"}
    keras_x["signup"] = np.asarray([parts(v) for v in raw["signup"]], dtype=np.float32)
    np.testing.assert_allclose(exported, np.asarray(model(keras_x)), atol=1e-5)


def test_tflite_and_onnx_refuse_text_lookups_naming_them(mixed, tmp_path):
    run, _ = mixed
    for fmt, name in (("tflite", "m.tflite"), ("onnx", "m.onnx")):
        ran = run_cli("export", run, "--format", fmt, "--output", tmp_path / name)
        assert ran.exit_code == 2, ran
        assert "plan (categorical)" in ran.stderr and "review (text)" in ran.stderr
        assert "--format savedmodel takes them" in ran.stderr and "Traceback" not in ran.stderr
        assert not (tmp_path / name).exists()


@pytest.mark.parametrize("fmt,name", [("tflite", "m.tflite"), ("onnx", "m.onnx")])
def test_numbers_and_dates_export_to_tflite_and_onnx_with_parity(numbers, tmp_path, fmt, name):
    run, _ = numbers
    ran = run_cli("export", run, "--format", fmt, "--output", tmp_path / name, "--json")
    assert ran.exit_code == 0, ran
    signature = json.loads((tmp_path / "signature.json").read_text())
    assert [c["column"] for c in signature["input"]["columns"]] == ["a", "b", "day"]
    assert signature["input"]["columns"][2]["shape"] == [None, 4]
    assert signature["parity"]["rows"] == 60 and signature["parity"]["max_abs_diff"] <= 1e-5
