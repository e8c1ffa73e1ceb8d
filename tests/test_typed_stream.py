"""data.stream with typed features: the first pass builds the same vocabularies and statistics as the
in-memory fit, from the training split only; the streamed model predicts, evaluates and fine-tunes on
raw columns like an in-memory one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from test_typed_features import CONFIG, mixed_rows, table_text

pytestmark = pytest.mark.slow


def _write(tmp_path: Path, rows, *, stream: str, validation="null", extra="", name="c"):
    data = tmp_path / "mixed.csv"
    if not data.exists():
        data.write_text(table_text(rows))
    config = tmp_path / f"{name}.yaml"
    config.write_text(CONFIG.format(train=data, validation=validation, epochs=1, training="",
                                    extra=f"  stream: {stream}\n{extra}"))
    return config


def _preprocessing(run: Path) -> dict:
    """What each preprocessing layer of model.keras learned: vocabularies, idf, normalization."""
    import keras

    model = keras.saving.load_model(run / "model.keras")
    out = {}
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("StringLookup", "TextVectorization"):
            out[layer.name] = list(layer.get_vocabulary())
            if kind == "TextVectorization" and layer.get_config().get("output_mode") == "tf_idf":
                out[layer.name + "/idf"] = np.asarray(layer._lookup_layer.idf_weights_const)
        elif kind == "Normalization":
            out[layer.name] = (np.asarray(layer.mean).ravel(), np.asarray(layer.variance).ravel())
    return out


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory):
    """The same table trained in memory and streamed (validation: a file, so both train on every row)."""
    tmp = tmp_path_factory.mktemp("twins")
    rows = mixed_rows(120, seed=3)
    for row in rows[::7]:
        row["signup"] = ""  # dates with gaps: the median of each part fills them
    extra = ("  features:\n    - plan\n    - region\n    - {name: charges, type: numeric, missing: median}\n"
             "    - auto_pay\n    - signup\n    - review\n    - {name: tier, type: categorical, max_tokens: 2}\n")
    for i, row in enumerate(rows):
        row["tier"] = ["gold", "silver", "bronze", "iron"][i % 7 % 4]
    runs = {}
    for stream in ("false", "true"):
        config = _write(tmp, rows, stream=stream, validation=str(tmp / "mixed.csv"), extra=extra, name=stream)
        ran = run_cli("train", config, "--output", tmp / f"run-{stream}", "--json")
        assert ran.exit_code == 0, ran
        runs[stream] = tmp / f"run-{stream}"
    return runs, tmp


def test_streamed_typed_model_is_the_in_memory_model(twin_runs):
    runs, _ = twin_runs
    memory = json.loads((runs["false"] / "run.json").read_text())
    streamed = json.loads((runs["true"] / "run.json").read_text())
    assert streamed["data"]["train"][0]["streamed"] is True
    assert streamed["features"] == memory["features"]  # types, counts, fills, statistics as recorded
    ours, theirs = _preprocessing(runs["true"]), _preprocessing(runs["false"])
    assert set(ours) == set(theirs) and len(ours) >= 6, sorted(ours)
    for name, value in theirs.items():
        if isinstance(value, tuple):  # Normalization: float64 merges chunk by chunk, within 1e-6 relative
            for a, b in zip(ours[name], value):
                np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=name)
        elif isinstance(value, np.ndarray):
            np.testing.assert_allclose(ours[name], value, rtol=1e-6, err_msg=name)
        else:
            assert ours[name] == value, name  # vocabularies: the same values in the same order
    tier = next(f for f in streamed["features"] if f["name"] == "tier")
    assert tier["vocabulary_size"] == 2  # max_tokens applied in the stream too


def test_streamed_typed_run_predicts_and_evaluates_raw_columns(twin_runs):
    runs, tmp = twin_runs
    ran = run_cli("predict", runs["true"], tmp / "mixed.csv")
    assert ran.exit_code == 0, ran
    assert len(ran.stdout.strip().splitlines()) == 121  # a header and one prediction per row
    evaluated = run_cli("evaluate", runs["true"], "--json")
    assert evaluated.exit_code == 0, evaluated
    assert 0.0 <= json.loads(evaluated.stdout)["metrics"]["accuracy"] <= 1.0


def test_streamed_vocabularies_leave_the_validation_rows_out(tmp_path):
    """A category seen only in rows the hash split holds out never enters the vocabulary."""
    from mlcli.data.stream import held_out

    rows = mixed_rows(200, seed=5)
    held = held_out(np.arange(len(rows), dtype=np.uint64), 7, 0.25)
    assert held.any() and not held.all()
    for i in np.flatnonzero(held):
        rows[i]["plan"] = f"only-held-{i}"
        rows[i]["charges"] = "100000"  # would drag the median and the mean if the held rows were counted
    config = _write(tmp_path, rows, stream="true", validation="0.25")
    ran = run_cli("train", config, "--output", tmp_path / "run")
    assert ran.exit_code == 0, ran
    features = {f["name"]: f for f in json.loads((tmp_path / "run" / "run.json").read_text())["features"]}
    assert features["plan"]["vocabulary_size"] == 3, features["plan"]
    kept = [float(r["charges"]) for r, h in zip(rows, held) if not h and r["charges"]]
    assert features["charges"]["rows"] == int((~held).sum())
    assert features["charges"]["fill"] == pytest.approx(float(np.median(np.float32(kept))), rel=1e-6)
    assert features["charges"]["statistics"]["max"] < 1000


def test_streamed_missing_policies_drop_and_error(tmp_path):
    rows = mixed_rows(60)
    config = _write(tmp_path, rows, stream="true", extra="  missing: drop")
    ran = run_cli("train", config, "--output", tmp_path / "dropped", "--json")
    assert ran.exit_code == 0, ran
    missing_charges = sum(1 for r in rows if not r["charges"])
    assert f"data.train: left out 6 row(s) with a missing region, {missing_charges} row(s) with a missing charges" \
        in ran.stderr
    assert json.loads((tmp_path / "dropped" / "run.json").read_text())["rows"]["train"] == 60 - len(
        {i for i, r in enumerate(rows) if not r["charges"] or not r["region"]})
    config = _write(tmp_path, rows, stream="true", extra="  missing: error", name="error")
    ran = run_cli("train", config, "--output", tmp_path / "error")
    assert ran.exit_code == 3, ran
    assert "column 'region', row 8: missing value" in ran.stderr and "Traceback" not in ran.stderr


def test_finetune_of_a_streamed_typed_parent_reads_raw_columns(twin_runs, tmp_path):
    runs, tmp = twin_runs
    config = tmp_path / "ft.yaml"
    config.write_text(f"""
finetune: {{freeze: [0]}}
data: {{train: {tmp / 'mixed.csv'}, label: label, validation: null, stream: true}}
training: {{epochs: 1, batch_size: 16}}
""")
    ran = run_cli("finetune", config, "--from", runs["true"], "--output", tmp_path / "ft")
    assert ran.exit_code == 0, ran
    manifest = json.loads((tmp_path / "ft" / "run.json").read_text())
    assert manifest["data"]["train"][0]["streamed"] is True
    assert [f["name"] for f in manifest["features"]] == [f["name"] for f in json.loads(
        (runs["true"] / "run.json").read_text())["features"]]


def test_the_streamed_median_beyond_the_exact_limit_is_within_its_stated_bound():
    """More distinct values than ValueCounts keeps exactly: values are truncated to `bits` significant
    bits, the same whatever the chunk order, and the median is within a relative 2^-bits."""
    from mlcli.data.stream_features import ValueCounts

    values = np.random.default_rng(0).lognormal(3.0, 1.0, 20_001)
    exact = float(np.median(values))
    medians = []
    for order in (np.arange(len(values)), np.random.default_rng(1).permutation(len(values))):
        counts = ValueCounts(limit=1_000)
        for chunk in np.array_split(values[order], 37):
            counts.add(chunk)
        assert len(counts.values) <= 1_000 and counts.bits < 52
        assert int(counts.counts.sum()) == len(values)
        medians.append(counts.median())
        assert abs(counts.median() - exact) <= exact * 2.0 ** -counts.bits, (counts.bits, counts.median(), exact)
    assert medians[0] == medians[1]
    small = ValueCounts()
    small.add(np.array([3.0, 1.0, 2.0, 10.0]))
    assert small.bits == 52 and small.median() == 2.5  # exact below the limit, as np.median
