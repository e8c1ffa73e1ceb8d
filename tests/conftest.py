"""Shared test helpers: the real CLI in-process (Typer's runner) or as a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None

    def __str__(self) -> str:  # shown by pytest when an assertion on a Ran fails
        return f"exit {self.exit_code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def run_cli(*args: str, input: str | None = None, env: dict | None = None) -> Ran:
    """Run mlcli in this process (fast: TensorFlow is imported once per test session)."""
    from mlcli.cli import app

    runner = CliRunner()
    argv = ["mlcli", *map(str, args)]
    with mock.patch.object(sys, "argv", argv):  # run.json records the command line as a process would
        result = runner.invoke(app, argv[1:], input=input, env=env, catch_exceptions=True)
    exception = result.exception if not isinstance(result.exception, SystemExit) else None
    return Ran(result.exit_code, result.stdout, result.stderr, exception)


def run_process(*args: str, env: dict | None = None, timeout: float = 300, cwd: Path | None = None,
                input: str | None = None) -> subprocess.CompletedProcess:
    """Run `python -m mlcli` as a real process (for exit codes, signals, fresh-process reloads)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mlcli", *[str(a) for a in args]],
        capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or REPO, input=input,
    )


# ---- resume: telling a resume from a restart --------------------------------------------------------
# Runs are deterministic, so a --resume that threw the saved state away and trained from scratch would
# end bit-identical. What tells them apart: the rows written before the stop (their timings included),
# the start point run.json records, and the epochs the resumed process itself reports.

def saved_point(run: Path) -> dict:
    """The resume point a stopped run directory holds ({"epochs_completed": 0, "step": 0} when none)."""
    path = run / "state" / "progress.json"
    progress = json.loads(path.read_text()) if path.is_file() else {}
    return {"epochs_completed": progress.get("epochs_completed", 0), "step": progress.get("step", 0)}


def history_lines(run: Path) -> list[str]:
    path = run / "history.csv"
    return path.read_text().splitlines() if path.is_file() else []


def kept_history(run: Path) -> list[str]:
    """history.csv's header and the rows its saved resume point covers: a resume keeps them byte for byte."""
    lines = history_lines(run)
    return lines[:1 + saved_point(run)["epochs_completed"]] if lines else []


def assert_resumed(run: Path, point: dict, kept: list[str], stderr: str | None = None) -> None:
    """The last process continued `run` from `point` (saved_point before it started), not from scratch:
    run.json records that start point, the rows `kept` (kept_history before it started) are still
    there byte for byte, and, given its stderr (not --quiet), it reported only the epochs after the point."""
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["resumed_from"][-1] == point, (manifest["resumed_from"], point)
    lines = history_lines(run)
    assert lines[:len(kept)] == kept, "rows written before the stop were rewritten"
    if stderr is not None:
        reported = [int(n) for n in re.findall(r"^epoch (\d+)/\d+ ", stderr, flags=re.MULTILINE)]
        assert reported == list(range(point["epochs_completed"] + 1, len(lines))), stderr
        assert ("resuming after" in stderr) == (point != {"epochs_completed": 0, "step": 0}), stderr


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def write(tmp_path: Path):
    """write("name.yaml", text) -> path, for configs and data files in a per-test folder."""

    def _write(name: str, text: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    return _write
