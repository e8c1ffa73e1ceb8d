"""`--json` on every way a command can end (CONTRACT §1, §11): argument errors that the parser raises
before the command runs, a bug (exit 1), and the JSON documents of validate, predict and init; and
usage lines that name arguments as the contract writes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import typer.main
from conftest import CONFIGS, REPO, run_cli
from evalpredict_runs import digits_table, plain_keras_copy, read_output, trained, write_csv

from mlcli.cli import app

COMMANDS = sorted(typer.main.get_command(app).commands)
BAD_CONFIG = "data:\n  train: builtin:digits/train\ntraining:\n  epoch: 3\n"


def _one_document(text: str) -> dict:
    document = json.loads(text)  # raises unless stdout is exactly one JSON document
    assert isinstance(document, dict)
    return document


# ---- argument errors: the parser's own, before the command runs -------------------------------------

@pytest.mark.parametrize("args, says", [
    (["train", "--bogus"], "No such option: --bogus"),
    (["train", "CONFIG", "--seed", "abc"], "Invalid value for '--seed'"),
    (["evaluate", "CKPT", "--batch-size", "0"], "Invalid value for '--batch-size'"),
    (["export", "CKPT", "--output", "out.onnx"], "Missing option '--format'"),
    (["predict", "CKPT"], "Missing argument 'INPUT'"),
    (["validate", "CONFIG", "--deep=maybe"], "--deep"),
    (["doctor", "extra"], "unexpected extra argument"),
    (["--bogus"], "No such option: --bogus"),
    (["trian"], "No such command 'trian'"),
], ids=["unknown-option", "not-an-integer", "below-minimum", "missing-option", "missing-argument",
        "flag-with-value", "extra-argument", "unknown-root-option", "unknown-command"])
def test_argument_errors_with_json_write_the_error_document(tmp_path, args, says):
    args = [str(CONFIGS / "tiny.yaml") if a == "CONFIG" else str(tmp_path) if a == "CKPT" else a for a in args]
    ran = run_cli(*args, "--json")
    assert ran.exit_code == 2, ran
    document = _one_document(ran.stdout)
    assert document["status"] == "error" and document["exit_code"] == 2, document
    assert document["error"] == "usage error" and says in document["message"], document
    assert says in ran.stderr  # the human message stays on stderr
    without = run_cli(*args)
    assert without.exit_code == 2 and without.stdout == "", without  # no --json: stdout stays empty


def test_json_after_double_dash_is_an_argument_not_the_flag():
    ran = run_cli("validate", str(CONFIGS / "tiny.yaml"), "--", "--json")
    assert ran.exit_code == 2 and ran.stdout == "", ran


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_json(command):
    ran = run_cli(command, "--help")
    assert "--json" in ran.stdout, f"mlcli {command} has no --json"


# ---- a bug (exit 1): the traceback on stderr, and still one document on stdout ------------------

def _boom(*args, **kwargs):
    raise RuntimeError("injected failure")


@pytest.mark.parametrize("args, target", [
    (["doctor", "--json"], "mlcli.cli.doctor.report"),
    (["validate", str(CONFIGS / "tiny.yaml"), "--json"], "mlcli.config.check_config"),
], ids=["doctor", "validate"])
def test_an_internal_error_writes_the_error_document(monkeypatch, args, target):
    monkeypatch.setattr(target, _boom)
    ran = run_cli(*args)
    assert ran.exit_code == 1, ran
    assert isinstance(ran.exception, RuntimeError)  # not swallowed: the bug keeps its traceback
    document = _one_document(ran.stdout)
    assert document["status"] == "error" and document["exit_code"] == 1, document
    assert document["error"] == "internal error" and document["message"] == "RuntimeError: injected failure"


_INJECT = textwrap.dedent("""\
    import sys
    module, name = sys.argv[1].rsplit(".", 1)
    def boom(*args, **kwargs):
        raise RuntimeError("injected failure")
    __import__(module)
    setattr(sys.modules[module], name, boom)
    sys.argv = ["mlcli", *sys.argv[2:]]
    from mlcli.cli import main
    main()
""")


@pytest.mark.slow
@pytest.mark.parametrize("args, target", [
    (["doctor", "--json"], "mlcli.cli.doctor.report"),
    (["validate", str(CONFIGS / "tiny.yaml"), "--json"], "mlcli.config.check_config"),
], ids=["doctor", "validate"])
def test_an_internal_error_in_a_real_process(args, target):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("MLCLI_DEBUG", None)
    done = subprocess.run([sys.executable, "-c", _INJECT, target, *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback (most recent call last)" in done.stderr and "RuntimeError: injected failure" in done.stderr
    document = _one_document(done.stdout)
    assert document["exit_code"] == 1 and document["message"] == "RuntimeError: injected failure"


def test_without_json_an_internal_error_leaves_stdout_empty(monkeypatch):
    monkeypatch.setattr("mlcli.cli.doctor.report", _boom)
    ran = run_cli("doctor")
    assert ran.exit_code == 1 and isinstance(ran.exception, RuntimeError) and ran.stdout == "", ran


# ---- validate --json ---------------------------------------------------------------------------------

def test_validate_json_on_a_valid_config():
    ran = run_cli("validate", CONFIGS / "tiny.yaml", "--json")
    assert ran.exit_code == 0, ran
    assert _one_document(ran.stdout) == {"valid": True, "problems": [], "config": str(CONFIGS / "tiny.yaml")}
    assert "valid —" in ran.stderr  # the human summary moves to stderr


def test_validate_json_lists_every_problem_with_key_file_and_line(write):
    bad = write("bad.yaml", BAD_CONFIG + "seed: -1\n")
    ran = run_cli("validate", bad, "--json", "--set", "data.validation=1.5")
    assert ran.exit_code == 2, ran
    document = _one_document(ran.stdout)
    assert document["valid"] is False and document["exit_code"] == 2
    problems = {p["key"]: p for p in document["problems"]}
    assert set(problems) == {"training.epoch", "seed", "data.validation"}, document
    assert problems["training.epoch"]["file"] == str(bad) and problems["training.epoch"]["line"] == 4
    assert problems["seed"]["line"] == 5 and "0" in problems["seed"]["message"]
    assert problems["data.validation"]["file"] == "--set data.validation=1.5"
    assert problems["data.validation"]["line"] is None
    assert all(set(p) == {"key", "file", "line", "message"} for p in document["problems"])
    assert "training.epoch: unknown key" in ran.stderr


def test_validate_json_on_a_missing_file(tmp_path):
    ran = run_cli("validate", tmp_path / "nope.yaml", "--json")
    assert ran.exit_code == 2, ran
    document = _one_document(ran.stdout)
    assert document["valid"] is False
    assert document["problems"][0]["file"] == str(tmp_path / "nope.yaml")
    assert "file not found" in document["problems"][0]["message"]


def test_validate_json_with_print_carries_the_resolved_config():
    ran = run_cli("validate", CONFIGS / "tiny.yaml", "--json", "--print", "--set", "training.epochs=4")
    assert ran.exit_code == 0, ran
    document = _one_document(ran.stdout)
    assert document["valid"] is True and document["resolved"]["training"]["epochs"] == 4
    assert document["resolved"]["name"] == "tiny"


# ---- init and schema --json ----------------------------------------------------------------------------

def test_init_json(tmp_path):
    ran = run_cli("init", tmp_path, "--template", "regression", "--json")
    assert ran.exit_code == 0, ran
    document = _one_document(ran.stdout)
    assert document["config"] == str(tmp_path / "regression.yaml") and (tmp_path / "regression.yaml").is_file()
    assert document["template"] == "regression" and any("mlcli train" in s for s in document["next_steps"])
    again = run_cli("init", tmp_path, "--template", "regression", "--json")  # exists: exit 2, one document
    assert again.exit_code == 2 and _one_document(again.stdout)["exit_code"] == 2, again


def test_schema_json_is_the_schema():
    ran = run_cli("schema", "--json")
    assert ran.exit_code == 0, ran
    assert _one_document(ran.stdout)["title"] == "mlcli config"


# ---- usage lines -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("command, usage", [
    ("evaluate", "Usage: mlcli evaluate [OPTIONS] CKPT"),
    ("predict", "Usage: mlcli predict [OPTIONS] CKPT INPUT"),
    ("export", "Usage: mlcli export [OPTIONS] CKPT"),
    ("init", "Usage: mlcli init [OPTIONS] [DIR]"),
    ("train", "Usage: mlcli train [OPTIONS] [CONFIG]"),
    ("finetune", "Usage: mlcli finetune [OPTIONS] [CONFIG]"),
    ("validate", "Usage: mlcli validate [OPTIONS] CONFIG"),
])
def test_usage_lines_name_arguments_as_the_contract_does(command, usage):
    ran = run_cli(command, "--help")
    assert ran.exit_code == 0, ran
    line = next(line.strip() for line in ran.stdout.splitlines() if "Usage:" in line)
    assert line == usage


@pytest.mark.parametrize("command", COMMANDS)
def test_no_usage_line_has_braces_or_double_brackets(command):
    line = next(line for line in run_cli(command, "--help").stdout.splitlines() if "Usage:" in line)
    assert "{" not in line and "[[" not in line, line


def test_usage_errors_show_the_same_usage_line():
    ran = run_cli("evaluate")
    assert ran.exit_code == 2 and "Usage: mlcli evaluate [OPTIONS] CKPT" in ran.stderr, ran
    assert "Missing argument 'CKPT'" in ran.stderr


# ---- predict --json and evaluate --label (trained runs) -----------------------------------------------

@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return trained("digits", tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predict_json_summarises_the_output_file(digits, tmp_path, suffix):
    output = tmp_path / f"predictions{suffix}"
    ran = run_cli("predict", digits, "builtin:digits/test", "--output", output, "--json")
    assert ran.exit_code == 0, ran
    document = _one_document(ran.stdout)
    assert document["checkpoint"] == str(digits / "model.keras")
    assert document["input"] == "builtin:digits/test" and document["output"] == str(output)
    assert document["rows"] == 359 == read_output(output).num_rows
    assert document["columns"][0] == "prediction"


@pytest.mark.slow
@pytest.mark.parametrize("output", [None, "-"], ids=["no-output", "stdout"])
def test_predict_json_needs_an_output_file(digits, output):
    ran = run_cli("predict", digits, "builtin:digits/test", *(["--output", output] if output else []), "--json")
    assert ran.exit_code == 2, ran
    document = _one_document(ran.stdout)  # the error document, and no predictions mixed into stdout
    assert document["exit_code"] == 2 and "--json needs --output FILE" in document["message"]


def _digits_with_label_named(tmp_path, name: str):
    table = digits_table()
    return write_csv(table.rename_columns([*table.column_names[:-1], name]), tmp_path / "digits.csv")


@pytest.mark.slow
def test_evaluate_label_names_the_label_column_for_a_plain_keras_file(digits, tmp_path):
    plain = plain_keras_copy(digits / "model.keras", tmp_path / "plain.keras")
    data = _digits_with_label_named(tmp_path, "digit")
    without = run_cli("evaluate", plain, "--data", data)
    assert without.exit_code == 3, without  # the default label column, `label`, is not there
    ran = run_cli("evaluate", plain, "--data", data, "--label", "digit", "--json")
    assert ran.exit_code == 0, ran
    document = _one_document(ran.stdout)
    reference = json.loads((digits / "metrics.json").read_text())
    assert document["samples"] == 359
    assert document["metrics"]["accuracy"] == pytest.approx(reference["test_accuracy"], abs=1e-6)


@pytest.mark.slow
def test_evaluate_label_for_a_run_on_other_data(digits, tmp_path):
    data = _digits_with_label_named(tmp_path, "target")
    ran = run_cli("evaluate", digits, "--data", data, "--label", "target", "--json")
    assert ran.exit_code == 0, ran
    assert _one_document(ran.stdout)["samples"] == 359


@pytest.mark.slow
def test_evaluate_label_errors(digits):
    no_data = run_cli("evaluate", digits, "--label", "digit", "--json")
    assert no_data.exit_code == 2, no_data
    assert "no --data was given" in _one_document(no_data.stdout)["message"]
    feature = json.loads((digits / "run.json").read_text())["features"][0]
    ran = run_cli("evaluate", digits, "--data", "builtin:digits/test", "--label", feature, "--json")
    assert ran.exit_code == 2, ran
    assert "is one of the model's input columns" in _one_document(ran.stdout)["message"]
    assert "Traceback" not in ran.stderr
