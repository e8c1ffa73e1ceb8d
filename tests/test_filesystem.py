"""The filesystem refusing a write, through the real CLI: a file where a folder is needed, a name too
long, a read-only folder (exit 2), a full disk (exit 7) — each one line naming the path and the OS's
reason, the --json error document, and run.json saying `failed` and why. Also: --force keeps the
files mlcli did not write, command-line paths are not "relative to the config file", and a
malformed MLCLI_TEST_KILL_AT is refused.

Read-only folders and full disks are real: tmpfs mounts this test makes and removes (root can write
into a chmod 0o555 folder, so chmod proves nothing here). Without the right to mount (not root, or
a container without CAP_SYS_ADMIN) those tests skip, saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONFIGS, REPO, run_cli, run_process
from evalpredict_runs import trained

TINY = CONFIGS / "tiny.yaml"
# A first layer this wide makes best.keras (600 KB) and the resume state (1.8 MB) larger than the small
# disks below, while the run's small files (config, labels, run.json, history, logs) still fit.
WIDE = ["--set", "model.layers.0.units=2000", "--set", "training.epochs=1"]


@pytest.fixture
def mount(tmp_path):
    """mount(name, options) -> a fresh tmpfs folder under tmp_path, unmounted after the test."""
    made: list[Path] = []

    def _mount(name: str, options: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): read-only and "
                        "full-disk tests need root with CAP_SYS_ADMIN")
        made.append(where)
        return where

    yield _mount
    for where in reversed(made):
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def read_only(mount) -> Path:
    return mount("read-only", "size=1m,ro")


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return trained("digits", tmp_path_factory)


def _assert_refused(ran, code: int, *texts: str) -> dict | None:
    """Exit `code`, no traceback, every text on stderr; returns the --json error document if any."""
    assert ran.exit_code == code, ran
    assert "Traceback" not in ran.stderr and ran.exception is None, ran
    for text in texts:
        assert text in ran.stderr, ran
    if not ran.stdout.strip():
        return None
    document = json.loads(ran.stdout)
    assert document["status"] == "error" and document["exit_code"] == code, document
    return document


def _manifest(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


# ---- a place that cannot be written: exit 2 before any work -------------------------------------------

def test_output_below_a_file_is_exit_2_naming_the_file(tmp_path):
    (tmp_path / "README.md").write_text("not a folder")
    run = tmp_path / "README.md" / "run"
    document = _assert_refused(run_cli("train", TINY, "--output", run, "--json"), 2,
                               f"--output {run}: cannot write there ({tmp_path / 'README.md'} is a file, not a folder)")
    assert str(run) in document["message"]
    assert (tmp_path / "README.md").read_text() == "not a folder"


def test_output_name_too_long_is_exit_2(tmp_path):
    for run in (tmp_path / ("a" * 300) / "run", tmp_path / "new" / ("b" * 300)):
        _assert_refused(run_cli("train", TINY, "--output", run, "--json"), 2, "cannot write there",
                        "File name too long")
    assert list(tmp_path.iterdir()) == []


def test_read_only_output_is_exit_2_with_the_json_document(read_only):
    run = read_only / "run"
    document = _assert_refused(run_cli("train", TINY, "--output", run, "--json"), 2,
                               f"--output {run}: cannot write there ({read_only}: Read-only file system)")
    assert document["error"] == "usage error" and "Read-only file system" in document["message"]


def test_default_run_directory_in_a_read_only_folder_is_exit_2(read_only, monkeypatch):
    monkeypatch.chdir(read_only)
    _assert_refused(run_cli("train", TINY, "--json"), 2, "run directory runs/tiny: cannot write there",
                    "Read-only file system")
    _assert_refused(run_cli("train", TINY, "--resume", "--json"), 2, "run directory runs/tiny: cannot write there")


def test_force_on_a_read_only_run_is_exit_2_and_leaves_it(digits, mount):
    run = digits
    before = sorted(p.name for p in run.iterdir())
    disk = mount("ro-run", "size=4m")
    subprocess.run(["cp", "-r", str(run), str(disk / "run")], check=True)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    _assert_refused(run_cli("train", TINY, "--output", disk / "run", "--force"), 2, "Read-only file system")
    assert sorted(p.name for p in (disk / "run").iterdir()) == before
    # Reading a run on a read-only disk needs no write at all.
    assert run_cli("evaluate", disk / "run", "--quiet").exit_code == 0


def test_predict_evaluate_export_refuse_a_read_only_folder(digits, read_only):
    run = digits
    _assert_refused(run_cli("predict", run, "builtin:digits/test", "--output", read_only / "p.csv"), 2,
                    f"--output {read_only / 'p.csv'}: cannot write there", "Read-only file system")
    _assert_refused(run_cli("evaluate", run, "--plot", read_only / "c.png", "--json"), 2,
                    f"--plot {read_only / 'c.png'}: cannot write there", "Read-only file system")
    for fmt, name in (("tflite", "m.tflite"), ("savedmodel", "sm")):
        _assert_refused(run_cli("export", run, "--format", fmt, "--output", read_only / name, "--json"), 2,
                        f"--output {read_only / name}: cannot write there", "Read-only file system")
    _assert_refused(run_cli("init", read_only / "starter"), 2, "cannot write there", "Read-only file system")


# ---- a full disk: exit 7, nothing half-written, the run says why it failed -----------------------------

@pytest.mark.slow
def test_full_disk_during_training_fails_the_run_with_its_reason_and_resume_finishes_it(mount):
    disk = mount("small", "size=256k")
    run = disk / "run"
    ran = run_cli("train", TINY, *WIDE, "--output", run, "--json")
    document = _assert_refused(ran, 7, f"{run / 'best.keras'}: writing failed (No space left on device)",
                               f"mlcli train --resume {run}")
    assert document["error"] == "storage error"
    manifest = _manifest(run)
    assert manifest["status"] == "failed" and manifest["ended_at"]
    assert manifest["failure"] == {"error": "storage error", "exit_code": 7,
                                   "message": f"{run / 'best.keras'}: writing failed (No space left on device)"}
    assert manifest["epochs_completed"] == 0  # no resume point was saved
    assert not [p.name for p in run.iterdir() if p.name.startswith(".") and p.name != ".lock"]  # no temporaries

    subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)  # space freed
    done = run_cli("train", "--resume", run, "--quiet", "--json")
    assert done.exit_code == 0, done
    assert json.loads(done.stdout)["status"] == "completed" and _manifest(run)["status"] == "completed"
    assert "failure" not in _manifest(run)


@pytest.mark.slow
def test_full_disk_as_a_real_process_is_one_line_and_exit_7(mount):
    disk = mount("small", "size=256k")
    done = run_process("train", TINY, *WIDE, "--output", disk / "run", "--json")
    assert done.returncode == 7, done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads(done.stdout)["error"] == "storage error"
    assert _manifest(disk / "run")["failure"]["exit_code"] == 7


@pytest.mark.slow
def test_disk_too_full_for_run_json_keeps_its_last_complete_version(mount):
    disk = mount("tiny", "size=20k")  # five pages: the lock, config, labels and run.json; no room for logs
    run = disk / "run"
    ran = run_cli("train", TINY, "--output", run)
    _assert_refused(ran, 7, f"{run / 'logs'}: writing failed (No space left on device)",
                    "run.json could not record the failure either")
    assert _manifest(run)["status"] == "running"  # complete JSON, the version before the failure


@pytest.mark.slow
def test_full_disk_in_predict_leaves_no_output_file(digits, mount):
    run = digits
    disk = mount("small", "size=16k")  # 359 rows of predictions are about 45 KB
    for name in ("p.csv", "p.parquet", "p.jsonl"):
        out = disk / name
        _assert_refused(run_cli("predict", run, "builtin:digits/test", "--output", out), 7,
                        f"--output {out}: writing failed (No space left on device)")
        assert list(disk.iterdir()) == []


@pytest.mark.slow
def test_full_disk_behind_stdout_is_exit_7_not_a_short_file(digits, mount):
    """With PYTHONUNBUFFERED=1 (common in CI images) stdout is a raw file that accepts part of a write
    and says so only by a count: predictions were cut short with exit 0."""
    run = digits
    disk = mount("small", "size=16k")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    with open(disk / "p.csv", "wb") as stdout:
        done = subprocess.run([sys.executable, "-m", "mlcli", "predict", str(run), "builtin:digits/test"],
                              stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, timeout=300)
    assert done.returncode == 7, done.stderr
    assert "stdout: writing failed (No space left on device)" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_full_disk_in_evaluate_plot_and_export(digits, mount):
    run = digits
    disk = mount("small", "size=8k")
    plot = disk / "c.png"
    _assert_refused(run_cli("evaluate", run, "--plot", plot, "--json"), 7,
                    f"{plot}: writing failed (No space left on device)")
    for fmt, name in (("tflite", "m.tflite"), ("savedmodel", "sm")):
        out = disk / name
        _assert_refused(run_cli("export", run, "--format", fmt, "--output", out, "--json"), 7,
                        f"--output {out}: writing failed (No space left on device)")
    assert list(disk.iterdir()) == []


# ---- --force removes what mlcli wrote, and only that ------------------------------------------------

@pytest.mark.slow
def test_force_keeps_files_mlcli_did_not_write(tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", TINY, "--output", run, "--quiet").exit_code == 0
    (run / "notes.txt").write_text("why this run exists")
    (run / "extra").mkdir()
    (run / "extra" / "data.csv").write_text("a\n1\n")
    ran = run_cli("train", TINY, "--output", run, "--force", "--set", "data.validation=null",
                  "--set", "training.epochs=1")
    assert ran.exit_code == 0, ran
    assert "kept 2 file(s) mlcli did not write" in ran.stderr and "extra, notes.txt" in ran.stderr
    assert (run / "notes.txt").read_text() == "why this run exists"
    assert (run / "extra" / "data.csv").read_text() == "a\n1\n"
    assert not (run / "best.keras").exists()  # the old run's files went
    assert _manifest(run)["epochs_completed"] == 1


# ---- which directory a relative path is read against ------------------------------------------------

def test_missing_command_line_path_says_working_directory(digits, tmp_path, monkeypatch):
    run = digits
    monkeypatch.chdir(tmp_path)
    for args in (("predict", run, "nope.csv"), ("evaluate", run, "--data", "nope.csv"),
                 ("predict", run, "nope-*.csv")):
        ran = run_cli(*args)
        _assert_refused(ran, 3, "nope", f"relative to the working directory, {tmp_path}")
        assert "config file" not in ran.stderr


def test_missing_config_path_still_says_config_file(write):
    config = write("c.yaml", TINY.read_text().replace("builtin:digits/train", "nope.csv"))
    _assert_refused(run_cli("train", config), 3, "paths in a config are relative to the config file")


# ---- MLCLI_TEST_KILL_AT ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["bogus", "before-rename:", "before-rename:x", "before-rename:0", ":3",
                                   "before-rename:1:2"])
def test_malformed_kill_at_is_exit_2_naming_the_variable(value, tmp_path):
    ran = run_cli("init", tmp_path / "starter", env={"MLCLI_TEST_KILL_AT": value})
    _assert_refused(ran, 2, f"MLCLI_TEST_KILL_AT={value!r}: expected NAME or NAME:N",
                    "before-rename, state-before-progress")
    assert not (tmp_path / "starter" / "classification.yaml").exists()


@pytest.mark.slow
def test_malformed_kill_at_in_training_is_the_json_error_document(tmp_path):
    ran = run_cli("train", TINY, "--output", tmp_path / "run", "--json", "--set", "training.epochs=1",
                  env={"MLCLI_TEST_KILL_AT": "before_rename"})
    document = _assert_refused(ran, 2, "MLCLI_TEST_KILL_AT='before_rename'")
    assert "expected NAME or NAME:N" in document["message"]
    # Nothing but the lock was written: the same command, corrected, may use the directory.
    assert [p.name for p in (tmp_path / "run").iterdir()] == [".lock"]
    assert run_cli("train", TINY, "--output", tmp_path / "run", "--quiet", "--set", "training.epochs=1").exit_code == 0
