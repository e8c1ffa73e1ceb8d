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
    from mlcli import console
    from mlcli.cli import app

    runner = CliRunner()
    argv = ["mlcli", *map(str, args)]
    # A process makes its stderr console once, sizing it from COLUMNS then: each run here gets a new one,
    # as a new process would, whatever the tests this pytest(-xdist) worker ran before.
    with mock.patch.object(sys, "argv", argv), mock.patch.object(console, "_stderr", None):
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


# ---- skips: CI fails on any skip not listed here ----------------------------------------------------
# A skip hides whatever the test would have found, so each one CI accepts is named here, test by test
# (the parameters aside), with the reason it gives. Any other skip makes the test run fail, listed at
# the end of the report: a missing optional package, a check that found nothing to check.

EXPECTED_SKIPS = {
    # Exactly one of these two runs: root reads any file, so as root the refusal is faked instead.
    "tests/test_corpus.py::test_unreadable_file": "root reads any file, so chmod 000 cannot make one unreadable",
    "tests/test_corpus.py::test_unreadable_file_as_root": "the real chmod 000 test runs instead",
    # A test of the missing-GPU error cannot run where a GPU is present.
    "tests/test_scale.py::test_a_required_gpu_that_is_missing_is_exit_4_with_the_diagnosis":
        "this machine has a GPU",
}

_skipped: list[tuple[str, str]] = []  # (node id, reason) of every skip in this session


def skip_is_expected(nodeid: str, reason: str) -> bool:
    return EXPECTED_SKIPS.get(nodeid.split("[", 1)[0]) == reason


def pytest_sessionstart(session):
    _skipped.clear()


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _record_skip(report)


def pytest_collectreport(report):  # a whole module skipped, e.g. by an importorskip at its top
    if report.skipped:
        _record_skip(report)


def _record_skip(report) -> None:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    _skipped.append((report.nodeid, reason.removeprefix("Skipped: ")))


def _unexpected_skips() -> list[tuple[str, str]]:
    return [(nodeid, reason) for nodeid, reason in _skipped if not skip_is_expected(nodeid, reason)]


def pytest_sessionfinish(session, exitstatus):
    if _unexpected_skips() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    unexpected = _unexpected_skips()
    if unexpected:
        terminalreporter.section("unexpected skips (the run fails: see EXPECTED_SKIPS in tests/conftest.py)",
                                 red=True)
        for nodeid, reason in unexpected:
            terminalreporter.line(f"{nodeid}: {reason}")
