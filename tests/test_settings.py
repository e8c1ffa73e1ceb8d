"""--quiet, --json, --verbose and --unsafe belong to the one command given them: commands run one after
another in a process (tests, notebooks) never see each other's, and the error boundary renders a
failing command's error with that command's own --json."""

from __future__ import annotations

import json

import pytest
from conftest import CONFIGS, run_cli

from mlcli import console
from mlcli.settings import Settings, active_settings, command_scope, json_written, note_json_written, use_settings

BAD_CONFIG = "data:\n  train: builtin:digits/train\ntraining:\n  epoch: 3\n"  # a config error, exit 2


def _at_defaults() -> bool:
    return active_settings() == Settings() and not json_written()


def test_a_failing_command_with_flags_then_commands_without(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_CONFIG)

    ran = run_cli("train", bad, "--output", tmp_path / "r", "--json", "--quiet", "--verbose")
    assert ran.exit_code == 2, ran
    assert json.loads(ran.stdout)["exit_code"] == 2  # the boundary's error document, the only one
    assert "training.epoch" in ran.stderr  # errors are shown even with --quiet
    assert _at_defaults()

    ran = run_cli("train", bad, "--output", tmp_path / "r")
    assert ran.exit_code == 2, ran
    assert ran.stdout == ""  # no --json this time: no error document
    assert "training.epoch" in ran.stderr
    assert _at_defaults()

    ran = run_cli("validate", CONFIGS / "digits.yaml")
    assert ran.exit_code == 0, ran
    assert ran.stdout == "" and "valid" in ran.stderr
    assert _at_defaults()


def test_quiet_ends_with_its_command(tmp_path):
    ran = run_cli("init", tmp_path / "a", "--quiet")
    assert ran.exit_code == 0, ran
    assert ran.stderr == ""
    ran = run_cli("init", tmp_path / "b")
    assert ran.exit_code == 0, ran
    assert "wrote" in ran.stderr
    assert _at_defaults()


def test_a_command_scope_is_undone_when_the_command_fails(capsys):
    with pytest.raises(RuntimeError), command_scope():
        use_settings(Settings(quiet=True, json=True, verbose=True, unsafe=True))
        console.info("hidden")
        note_json_written()
        console.error_json({"error": "not written: a document is already out"})
        raise RuntimeError
    assert _at_defaults()
    console.info("shown")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "hidden" not in captured.err and "shown" in captured.err


@pytest.mark.slow
def test_a_successful_run_with_every_flag_then_one_without(tmp_path):
    args = ("train", CONFIGS / "tiny.yaml", "--set", "training.epochs=1")
    ran = run_cli(*args, "--output", tmp_path / "a", "--json", "--quiet", "--verbose")
    assert ran.exit_code == 0, ran
    assert json.loads(ran.stdout)["status"] == "completed"
    assert "run directory" not in ran.stderr
    assert _at_defaults()

    ran = run_cli(*args, "--output", tmp_path / "b")
    assert ran.exit_code == 0, ran
    assert ran.stdout == ""
    assert f"run directory: {tmp_path / 'b'}" in ran.stderr
    assert _at_defaults()
