"""Typed features given bad input: each a clear message, the right exit code (2 config, 3 data), no
traceback, and no finished run left behind."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from test_typed_features import CONFIG, mixed_rows, table_text

pytestmark = pytest.mark.slow


def _config(tmp_path, extra: str, rows=None):
    data = tmp_path / "mixed.csv"
    data.write_text(table_text(rows if rows is not None else mixed_rows(40)))
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(train=data, validation="0.25", extra=extra, epochs=1, training=""))
    return config


def _run(tmp_path, extra: str, rows=None, *args):
    ran = run_cli("train", _config(tmp_path, extra, rows), "--output", tmp_path / "run", *args)
    assert "Traceback" not in ran.stderr, ran
    assert not (tmp_path / "run" / "model.keras").exists()
    return ran


@pytest.mark.parametrize("extra, line, message", [  # the template's data.exclude is on line 8
    ("  features: [plan, {name: plan, type: categorical}]", 9,
     "data.features: lists a column twice ('plan') — name each column once"),
    ("  features: [plan, id]", 8, "data.exclude.0: 'id' is also listed in data.features"),
    ("  features:\n    - {name: plan, type: categorical, missing: median}", 10,
     "data.features.0.missing: missing: median cannot apply to a categorical feature — expected one of auto, "
     "error, drop, most_frequent, category"),
    ("  features:\n    - {name: charges, type: numeric, max_tokens: 10}", 10,
     "data.features.0.max_tokens: max_tokens applies to categorical and text features, not numeric"),
    ("  features:\n    - {name: plan, type: category}", 10,
     "data.features.0.type: got 'category' — expected one of 'numeric', 'categorical', 'binary', 'text' or 'date'"),
])
def test_config_errors_name_the_line(tmp_path, extra, line, message):
    ran = _run(tmp_path, extra)
    assert ran.exit_code == 2, ran
    assert f"c.yaml:{line}: {message}" in ran.stderr


@pytest.mark.parametrize("extra, code, message", [
    # a text column given numeric
    ("  features:\n    - {name: review, type: numeric}", 3,
     "column 'review' is declared numeric, but only 0% of its values are numbers (e.g. "),
    # a declared type the column cannot hold
    ("  features:\n    - {name: region, type: binary}", 3,
     "column 'region' is declared binary but holds 3 distinct values"),
    ("  features:\n    - {name: charges, type: date}", 3, "column 'charges' is declared date but holds numbers"),
    ("  features:\n    - {name: charges, type: text}", 3, "column 'charges' is declared text but holds numbers"),
    # a policy that cannot apply to the type the column was inferred to be
    ("  features:\n    - {name: plan, missing: mean}", 2,
     "column 'plan' was inferred categorical, which cannot use missing: mean"),
])
def test_types_and_policies_the_column_cannot_take(tmp_path, extra, code, message):
    ran = _run(tmp_path, extra)
    assert ran.exit_code == code, ran
    assert message in ran.stderr, ran


def test_exclude_names_a_column_that_is_not_there(tmp_path):
    config = _config(tmp_path, "")
    config.write_text(config.read_text().replace("exclude: [id]", "exclude: [id, regoin]"))
    ran = run_cli("train", config, "--output", tmp_path / "run")
    assert ran.exit_code == 3, ran
    assert "data.exclude names 'regoin', which is not a column" in ran.stderr and "did you mean 'region'" in ran.stderr


def test_a_date_that_does_not_parse_is_named_by_its_row(tmp_path):
    rows = mixed_rows(40)
    rows[4]["signup"] = "2023-02-30"
    ran = _run(tmp_path, "", rows)
    assert ran.exit_code == 3, ran
    assert "column 'signup', row 5: '2023-02-30' is not a date — expected an ISO 8601 date" in ran.stderr
    rows[4]["signup"] = "31/01/2023"
    ran = _run(tmp_path, "  features: [plan, {name: signup, type: date, format: '%Y-%m-%d'}]", rows)
    assert ran.exit_code == 3, ran
    assert "column 'signup', row 5: '31/01/2023' is not a date — expected the format '%Y-%m-%d'" in ran.stderr


def test_a_stray_word_in_a_numeric_column_is_named(tmp_path):
    rows = mixed_rows(40)
    rows[6]["charges"] = "unknown"  # 1 of 40: a numeric column with a bad value, not a category
    ran = _run(tmp_path, "", rows)
    assert ran.exit_code == 3, ran
    assert "column 'charges', row 7: 'unknown' is not a number" in ran.stderr
    assert "declare {name: charges, type: categorical}" in ran.stderr


def test_missing_error_policy_names_the_row(tmp_path):
    rows = mixed_rows(40)
    rows[2]["region"] = ""
    ran = _run(tmp_path, "  missing: error", rows)
    assert ran.exit_code == 3, ran
    assert "column 'region', row 3: missing value — the feature's missing policy is error" in ran.stderr


def test_a_label_with_every_value_missing(tmp_path):
    rows = mixed_rows(40)
    for row in rows:
        row["label"] = ""
    ran = _run(tmp_path, "  missing_label: drop", rows)
    assert ran.exit_code == 3, ran
    assert "the label column 'label' has no value in any row" in ran.stderr
    ran = _run(tmp_path, "", rows)
    assert ran.exit_code == 3, ran
    assert "label column 'label', row 1: missing label" in ran.stderr


def test_every_value_of_a_feature_missing(tmp_path):
    rows = mixed_rows(40)
    for row in rows:
        row["region"] = ""
    ran = _run(tmp_path, "", rows)
    assert ran.exit_code == 3, ran
    assert "column 'region' has no value in any row" in ran.stderr and "data.exclude" in ran.stderr


def test_errors_with_json_are_one_document(tmp_path):
    rows = mixed_rows(40)
    rows[4]["signup"] = "2023-13-01"
    ran = _run(tmp_path, "", rows, "--json")
    assert ran.exit_code == 3, ran
    document = json.loads(ran.stdout)
    assert document["exit_code"] == 3 and "row 5: '2023-13-01' is not a date" in document["message"]


def test_typed_features_need_a_table(tmp_path):
    from conftest import REPO

    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{train: {REPO / 'tests/corpus/data/47-good.npz'}, label: y, missing: median}}\n"
                      "model: {layers: [{type: Dense, units: 2, activation: softmax}]}\n")
    ran = run_cli("train", config, "--output", tmp_path / "run")
    assert ran.exit_code == 2, ran
    assert "typed features (declared types, or data.missing filling or dropping values) need a table" in ran.stderr
