"""The CLI skeleton: help, version, shipped configs, the error boundary, and no TensorFlow where the
contract says so (docs/contract.md §1: `--help`, `validate` and config errors never import TensorFlow)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import typer.main
import yaml
from conftest import CONFIGS, REPO, run_cli, run_process

from mlcli import __version__
from mlcli.cli import app

# Every registered command (and sub-app), so a new command is covered without touching this file.
COMMANDS = sorted(typer.main.get_command(app).commands)
SHIPPED = sorted(CONFIGS.glob("*.yaml"))

BAD_CONFIG = "data:\n  train: builtin:digits/train\ntraining:\n  epoch: 3\n"


def test_the_contract_commands_that_exist_are_registered():
    assert {"validate", "doctor"} <= set(COMMANDS)


def test_app_help():
    ran = run_cli("--help")
    assert ran.exit_code == 0, ran
    assert "Usage" in ran.stdout
    for name in COMMANDS:
        assert name in ran.stdout, name


def test_no_arguments_shows_help_not_a_traceback():
    ran = run_cli()
    assert ran.exit_code == 2, ran  # a missing command is a usage error
    assert "Usage" in ran.stdout + ran.stderr
    assert ran.exception is None and "Traceback" not in ran.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command):
    ran = run_cli(command, "--help")
    assert ran.exit_code == 0, ran
    assert ran.exception is None, ran
    assert f"Usage: mlcli {command}" in ran.stdout or f"{command} [OPTIONS]" in ran.stdout, ran


@pytest.mark.parametrize("command", COMMANDS)
def test_command_short_help(command):
    ran = run_cli(command, "-h")
    assert ran.exit_code == 0, ran
    assert "Usage" in ran.stdout


def test_validate_help_lists_its_options():
    out = run_cli("validate", "--help").stdout
    for option in ("--set", "--print", "--deep"):
        assert option in out


def test_version():
    ran = run_cli("--version")
    assert ran.exit_code == 0, ran
    assert ran.stdout.strip() == f"mlcli {__version__}"


def test_unknown_command_is_a_usage_error():
    ran = run_cli("trian", "configs/digits.yaml")
    assert ran.exit_code == 2, ran
    assert "Traceback" not in ran.stderr


def test_unknown_option_is_a_usage_error():
    ran = run_cli("validate", CONFIGS / "digits.yaml", "--epochs", "3")
    assert ran.exit_code == 2, ran
    assert "--epochs" in ran.stderr


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_are_valid(config):
    ran = run_cli("validate", config)
    assert ran.exit_code == 0, ran
    assert f"{config}: valid — " in ran.stderr
    assert ran.stdout == ""  # without --print, stdout stays empty
    # A finetune config has no model of its own: the summary does not count the default's layers as its.
    written = "model" in yaml.safe_load(config.read_text())
    assert ("no model section" in ran.stderr) != written


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_start_with_the_command_that_runs_them(config):
    first = config.read_text().splitlines()[0]
    assert first.startswith("# mlcli ") and config.name in first


def test_digits_is_the_seed_network():
    ran = run_cli("validate", CONFIGS / "digits.yaml", "--print")
    assert ran.exit_code == 0, ran
    config = yaml.safe_load(ran.stdout)
    assert config["model"]["layers"] == [
        {"type": "Dense", "units": 64, "activation": "relu"},
        {"type": "Dense", "units": 64, "activation": "relu"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ]
    assert config["optimizer"] == {"type": "adam", "learning_rate": 0.01}
    assert config["loss"] == "categorical_crossentropy"
    assert config["metrics"] == ["accuracy"]
    assert config["training"]["epochs"] == 10
    assert config["data"]["train"] == "builtin:digits/train"


# ---- subprocesses: a fresh interpreter is the only honest test of what gets imported ---------------

def _python(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.pop("MLCLI_DEBUG", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, env=full_env,
                          cwd=REPO)


# Runs `python -m mlcli ARGS...` in-process, then reports whether TensorFlow was imported.
_WRAPPER = textwrap.dedent("""\
    import runpy, sys
    sys.argv = ["mlcli", *sys.argv[1:]]
    code = 0
    try:
        runpy.run_module("mlcli", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    print("tensorflow imported:", "tensorflow" in sys.modules, file=sys.stderr)
    sys.exit(code)
""")


@pytest.mark.slow
def test_importing_the_cli_does_not_import_tensorflow():
    done = _python("-c", "import sys, mlcli.cli; print('tensorflow' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.slow
@pytest.mark.parametrize("args, code", [
    (["--help"], 0),
    (["validate", "configs/digits.yaml"], 0),
    (["validate", "configs/digits.yaml", "--print", "--set", "training.epochs=2"], 0),
    (["validate", "BAD"], 2),
], ids=["help", "validate", "validate-print-set", "config-error"])
def test_no_tensorflow_import(tmp_path, args, code):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_CONFIG)
    args = [str(bad) if a == "BAD" else a for a in args]
    done = _python("-c", _WRAPPER, *args)
    assert done.returncode == code, done.stderr
    assert "tensorflow imported: False" in done.stderr, done.stderr


@pytest.mark.slow
def test_config_error_without_debug_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_CONFIG)
    done = run_process("validate", bad, env={"MLCLI_DEBUG": "0"})
    assert done.returncode == 2, done.stderr
    assert "bad.yaml:4: training.epoch: unknown key" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert "\x1b[" not in done.stderr  # not a terminal: no ANSI codes


@pytest.mark.slow
def test_mlcli_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_CONFIG)
    done = run_process("validate", bad, env={"MLCLI_DEBUG": "1"})
    assert done.returncode == 2, done.stderr  # still the config error's exit code
    assert "Traceback (most recent call last)" in done.stderr
    assert "ConfigError" in done.stderr
    assert "bad.yaml:4: training.epoch: unknown key" in done.stderr


@pytest.mark.slow
def test_version_in_a_real_process():
    done = run_process("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"mlcli {__version__}"
