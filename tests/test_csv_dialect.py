"""data.csv {delimiter, decimal, encoding} through the real CLI: a French-style export (';', decimal
commas, latin-1) trains in memory and streamed, and evaluate and predict read such files in the run's
own dialect; a file separated otherwise than configured is exit 3 with the setting that reads it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

CONFIG = """
name: fr
seed: 1
data:
  train: {train}
  label: prix
  task: regression
{extra}
model:
  layers: [{{type: Dense, units: 8, activation: relu}}, {{type: Dense, units: 1}}]
optimizer: {{type: adam, learning_rate: 0.02}}
loss: mse
metrics: [mae]
training: {{epochs: 2, batch_size: 16}}
"""
FRENCH = '  csv: {delimiter: ";", decimal: ",", encoding: latin-1}'
REGIONS = {"Rhône": 5.0, "Île-de-France": 20.0, "Bretagne": 0.0}


def french_table(path: Path, n: int = 90, region: bool = True) -> Path:
    rng = np.random.default_rng(0)
    lines = ["taille;région;prix" if region else "taille;pièces;prix"]
    for _ in range(n):
        size, name = rng.normal(10, 2), str(rng.choice(list(REGIONS)))
        second = name if region else f"{rng.integers(1, 6)}"
        price = 3 * size + REGIONS[name] + rng.normal(0, 1)
        lines.append(f"{size:.2f};{second};{price:.2f}".replace(".", ","))
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return path


def write_config(tmp: Path, train: Path, extra: str = FRENCH, name: str = "fr") -> Path:
    config = tmp / f"{name}.yaml"
    config.write_text(CONFIG.format(train=train, extra=extra))
    return config


@pytest.mark.slow
def test_a_semicolon_decimal_comma_latin1_table_trains_and_is_evaluated_and_predicted(tmp_path):
    data = french_table(tmp_path / "fr.csv")
    ran = run_cli("train", write_config(tmp_path, data), "--output", tmp_path / "run")
    assert ran.exit_code == 0, ran
    features = {f["name"]: f for f in json.loads((tmp_path / "run" / "run.json").read_text())["features"]}
    assert features["taille"]["type"] == "numeric" and 9 < features["taille"]["statistics"]["mean"] < 11  # 10,25: 10.25
    assert features["région"]["type"] == "categorical" and features["région"]["vocabulary_size"] == 3
    for args in ((), ("--data", data)):  # the validation split rebuilt, and a file read in batches
        evaluated = run_cli("evaluate", tmp_path / "run", *args, "--json")
        assert evaluated.exit_code == 0, evaluated
        assert json.loads(evaluated.stdout)["samples"] == (18 if not args else 90)
    predicted = run_cli("predict", tmp_path / "run", data, "--keep", "région")
    assert predicted.exit_code == 0, predicted
    lines = predicted.stdout.strip().splitlines()
    assert lines[0] == "région,prediction" and len(lines) == 91
    assert lines[1].split(",")[0] in REGIONS  # latin-1 decoded: 'Île-de-France', not mojibake
    piped = run_cli("predict", tmp_path / "run", "-", input=data.read_bytes())  # stdin: latin-1 bytes too
    assert piped.exit_code == 0, piped
    assert piped.stdout.strip().splitlines()[1:] == [line.split(",")[1] for line in lines[1:]]


@pytest.mark.slow
def test_a_numbers_only_table_in_the_dialect_trains_streamed(tmp_path):
    data = french_table(tmp_path / "fr.csv", region=False)
    extra = FRENCH + "\n  stream: true\n  validation: null"
    ran = run_cli("train", write_config(tmp_path, data, extra), "--output", tmp_path / "run", "--json")
    assert ran.exit_code == 0, ran
    assert json.loads((tmp_path / "run" / "run.json").read_text())["rows"]["train"] == 90
    assert json.loads(ran.stdout)["metrics"]["mae"] < 60  # prices of about 30-50: numbers, not garbage


def test_a_file_separated_otherwise_is_exit_3_with_the_setting_that_reads_it(tmp_path):
    data = french_table(tmp_path / "fr.csv")
    ran = run_cli("train", write_config(tmp_path, data, extra=""), "--output", tmp_path / "run")
    assert ran.exit_code == 3, ran
    assert "did you mean data.csv.delimiter: ';'?" in ran.stderr and "Traceback" not in ran.stderr, ran
    utf8 = tmp_path / "utf8.csv"
    utf8.write_text(data.read_bytes().decode("latin-1"))
    ran = run_cli("train", write_config(tmp_path, utf8, extra="", name="u"), "--output", tmp_path / "run2")
    assert ran.exit_code == 3, ran
    assert "did you mean data.csv.delimiter: ';'?" in ran.stderr, ran


@pytest.mark.parametrize("setting, message", [
    ('{encoding: klingon}', "'klingon' is not a text encoding"),
    ('{delimiter: ",", decimal: ","}', "is also the delimiter"),
    ('{delimiter: ";;"}', "delimiter"),
])
def test_a_bad_dialect_is_a_config_error(tmp_path, setting, message):
    config = write_config(tmp_path, french_table(tmp_path / "fr.csv", n=5), extra=f"  csv: {setting}")
    ran = run_cli("validate", config)
    assert ran.exit_code == 2, ran
    assert "data.csv" in ran.stderr and message in ran.stderr, ran
