"""`mlcli init`: one commented starter config that validates and trains as written on bundled data,
never overwriting a file unless --force."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

TEMPLATES = ["classification", "regression", "finetune"]


def _init(*args):
    return run_cli("init", *map(str, args))


@pytest.mark.parametrize("template", TEMPLATES)
def test_init_writes_one_commented_config_that_validates(tmp_path, template):
    target = tmp_path / "project"
    ran = _init(target, "--template", template)
    assert ran.exit_code == 0, ran
    assert [p.name for p in target.iterdir()] == [f"{template}.yaml"]  # the config and nothing else
    text = (target / f"{template}.yaml").read_text()
    assert text.startswith("# ") and "mlcli " in text.splitlines()[0]
    assert sum(1 for line in text.splitlines() if "#" in line) >= 10  # commented, not bare
    assert f"wrote {target / f'{template}.yaml'}" in ran.stderr and ran.stdout == ""
    checked = run_cli("validate", target / f"{template}.yaml")
    assert checked.exit_code == 0, checked


def test_the_default_is_classification_in_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ran = _init()
    assert ran.exit_code == 0, ran
    assert [p.name for p in tmp_path.iterdir()] == ["classification.yaml"]
    assert "mlcli train classification.yaml" in ran.stderr


@pytest.mark.slow
@pytest.mark.parametrize("template", ["classification", "regression"])
def test_a_starter_trains_one_epoch_as_written(tmp_path, template):
    assert _init(tmp_path, "--template", template).exit_code == 0
    ran = run_cli("train", tmp_path / f"{template}.yaml", "--output", tmp_path / "run",
                  "--set", "training.epochs=1", "--json", "--quiet")
    assert ran.exit_code == 0, ran
    document = json.loads(ran.stdout)
    assert document["status"] == "completed" and document["epochs_completed"] == 1
    assert "test_loss" in document["metrics"]  # the bundled test split is wired in
    assert (tmp_path / "run" / "plots" / "curves.png").is_file()


@pytest.mark.slow
def test_the_finetune_starter_says_its_two_commands_and_they_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ran = _init(".", "--template", "finetune")
    assert ran.exit_code == 0, ran
    first, second = (tmp_path / "finetune.yaml").read_text().splitlines()[:2]
    assert first.startswith("# 1. mlcli train classification.yaml --output runs/digits")
    assert second == "# 2. mlcli finetune finetune.yaml --from runs/digits"
    assert "1. mlcli train classification.yaml --output runs/digits" in ran.stderr
    assert _init(".", "--template", "classification").exit_code == 0
    # The two commands, as written (shortened to one epoch each).
    parent = run_cli("train", "classification.yaml", "--output", "runs/digits", "--set", "training.epochs=1", "--quiet")
    assert parent.exit_code == 0, parent
    child = run_cli("finetune", "finetune.yaml", "--from", "runs/digits", "--set", "training.epochs=1", "--json",
                    "--quiet")
    assert child.exit_code == 0, child
    document = json.loads(child.stdout)
    assert document["status"] == "completed"
    assert (tmp_path / "runs" / "finetune" / "plots" / "confusion.png").is_file()


def test_an_existing_file_is_refused_unless_force(tmp_path):
    target = tmp_path / "classification.yaml"
    target.write_text("mine\n")
    ran = _init(tmp_path)
    assert ran.exit_code == 2, ran
    assert f"usage error: {target} already exists" in ran.stderr
    assert "pass --force to overwrite it" in ran.stderr
    assert ran.exception is None and "Traceback" not in ran.stderr
    assert target.read_text() == "mine\n"
    forced = _init(tmp_path, "--force")
    assert forced.exit_code == 0, forced
    assert target.read_text().startswith("# mlcli train classification.yaml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classification.yaml"]  # no temporary left


@pytest.mark.parametrize("setup, args, message", [
    (None, ["--template", "vision"], ("--template vision: unknown template — expected one of classification, "
                                      "regression, finetune")),
    ("file", [], "is a file — expected a directory to write classification.yaml into"),
    ("dir", [], "classification.yaml: is a directory — choose another DIR"),
], ids=["unknown-template", "dir-is-a-file", "target-is-a-directory"])
def test_usage_errors(tmp_path, setup, args, message):
    where = tmp_path / "here"
    if setup == "file":
        where.write_text("x")
    elif setup == "dir":
        (where / "classification.yaml").mkdir(parents=True)
    ran = _init(where, *args)
    assert ran.exit_code == 2, ran
    assert message in ran.stderr, ran
    assert ran.exception is None and "Traceback" not in ran.stderr


def test_quiet_leaves_stderr_empty(tmp_path):
    ran = _init(tmp_path, "--quiet")
    assert ran.exit_code == 0, ran
    assert ran.stderr == "" and (tmp_path / "classification.yaml").is_file()
