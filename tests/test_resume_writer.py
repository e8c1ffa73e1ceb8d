"""The resume state is written off the training thread (mlcli.run.resume.PointWriter): a write that
fails there still fails the run, with the storage error's exit code and message."""

from __future__ import annotations

import errno
import json

import pytest
from conftest import CONFIGS, run_cli

from mlcli.run import files, resume


@pytest.mark.slow
def test_a_resume_point_that_cannot_be_written_fails_the_run_with_exit_7(tmp_path, monkeypatch):
    def full_disk(run_dir, progress, arrays):  # only the state's write fails: every other file is written
        with files.writing(run_dir / files.STATE / "epoch.npz"):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(resume, "write_point", full_disk)
    run = tmp_path / "run"
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", run, "--json", "--set", "training.epochs=1")
    assert ran.exit_code == 7, ran
    assert f"{run / files.STATE / 'epoch.npz'}: writing failed (No space left on device)" in ran.stderr, ran
    assert "Traceback" not in ran.stderr
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "failed" and manifest["failure"]["exit_code"] == 7
