"""README's CI recipe runs as written: train with a gate, evaluate with a gate, predict."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow


def _recipe() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- ci-recipe:begin -->\n```sh\n(.*?)```\n<!-- ci-recipe:end -->", text, re.S)
    assert match, "README has no CI recipe between the ci-recipe markers"
    return match.group(1)


def _mlcli_bin() -> str:
    """The directory of the installed `mlcli` command (make install puts it beside python)."""
    folder = Path(sys.executable).parent
    if not (folder / "mlcli").exists():
        pytest.fail(f"no `mlcli` command beside {sys.executable}: run `make install` first")
    return str(folder)


def _run(tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    (tmp_path / "ci.sh").write_text(script)
    env = dict(os.environ, PATH=_mlcli_bin() + os.pathsep + os.environ["PATH"])
    return subprocess.run(["bash", "ci.sh"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_the_ci_recipe_runs_and_gates(tmp_path):
    done = _run(tmp_path, _recipe())
    assert done.returncode == 0, done.stderr
    accuracy = json.loads((tmp_path / "train.json").read_text())["metrics"]["test_accuracy"]
    assert accuracy >= 0.90 and f"test accuracy {accuracy}" in done.stdout
    assert json.loads((tmp_path / "evaluation.json").read_text())["samples"] == 359
    assert len((tmp_path / "predictions.csv").read_text().splitlines()) == 360
    again = subprocess.run(["bash", "ci.sh"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                           env=dict(os.environ, PATH=_mlcli_bin() + os.pathsep + os.environ["PATH"]))
    assert again.returncode == 0, again.stderr  # a retry of a finished run does nothing and passes again


def test_the_ci_recipe_fails_with_exit_5_when_a_gate_fails(tmp_path):
    done = _run(tmp_path, _recipe().replace("test_accuracy=0.90", "test_accuracy=0.999"))
    assert done.returncode == 5, done.stderr
    assert "test_accuracy" in done.stderr and "below 0.999" in done.stderr
    assert (tmp_path / "runs" / "ci-digits" / "model.keras").is_file()  # saved all the same
    assert not (tmp_path / "predictions.csv").exists()  # set -e stopped the script at the gate
