"""Shared test helpers: the real CLI in-process (Typer's runner) or as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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
    result = runner.invoke(app, [str(a) for a in args], input=input, env=env, catch_exceptions=True)
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
