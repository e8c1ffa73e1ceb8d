"""Nothing lost: real processes killed at many points (SIGKILL, SIGINT, SIGTERM, crashes inside a
save), resumed, and compared bit for bit with the same run left alone."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, assert_resumed, history_lines, kept_history, run_cli, run_process, saved_point

pytestmark = pytest.mark.slow

# Dropout (random state), a schedule (optimizer step count), early stopping and a best checkpoint
# (callback state), mid-epoch resume points every 7 steps: everything a resume must restore.
CONFIG = """
name: resumable
seed: 13
data: {train: builtin:digits/train, validation: 0.2}
model:
  layers:
    - {type: Dense, units: 24, activation: relu}
    - {type: Dropout, rate: 0.2}
    - {type: Dense, units: 10, activation: softmax}
optimizer:
  type: adam
  learning_rate: {type: ExponentialDecay, initial_learning_rate: 0.01, decay_steps: 50, decay_rate: 0.9}
training:
  epochs: 3
  batch_size: 16
  checkpoint_every_steps: 7
  early_stopping: {monitor: val_loss, patience: 5, restore_best_weights: true}
runtime: {deterministic: true}
"""


def _env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def _start(*args, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mlcli", *map(str, args), "--quiet"], env=_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def _progress(run: Path) -> dict:
    try:
        return json.loads((run / "state" / "progress.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _wait(process: subprocess.Popen, run: Path, condition, timeout: float = 600) -> None:  # a hang guard only
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition(_progress(run)):
            return
        if process.poll() is not None:
            raise AssertionError(f"process ended before the kill point: {process.communicate()}")
        time.sleep(0.01)
    raise AssertionError("kill point never reached")


def _weights(path: Path) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(path).get_weights()


def _history(run: Path) -> list[dict]:
    with open(run / "history.csv") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def _assert_every_file_whole(run: Path) -> None:
    """After any kill: each JSON parses, each .keras archive is intact, no file is half-written."""
    for path in list(run.glob("*.json")) + list((run / "state").glob("*.json")):
        json.loads(path.read_text())
    for path in list(run.glob("*.keras")) + list((run / "state").glob("*.keras")):
        if not path.name.startswith("."):
            with zipfile.ZipFile(path) as archive:
                assert archive.testzip() is None, path
    if (run / "history.csv").exists():
        with open(run / "history.csv") as handle:
            rows = list(csv.reader(handle))
        assert all(len(row) == len(rows[0]) for row in rows)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "resumable.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def reference(config, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ref") / "run"
    done = run_process("train", config, "--output", run, "--quiet")
    assert done.returncode == 0, done.stderr
    return run


def _temporaries(run: Path) -> set[Path]:
    return {path for path in run.rglob(".*") if path.is_file() and path.name != ".lock"}


def _died_writing(run: Path, before: set[Path]) -> str:
    """The file a process killed by a fault point was writing: the one whose temporary file it left
    (.NAME.RANDOM.tmp), or, killed between a resume point's arrays and its progress.json, "progress.json"."""
    left = sorted(_temporaries(run) - before)
    if left:
        return ", ".join(str(path.parent.relative_to(run) / path.name[1:].rsplit(".", 2)[0]) for path in left)
    progress = _progress(run).get("arrays")
    arrays = {path.name for path in (run / "state").glob("*.npz")}
    return "progress.json" if arrays - {progress} else "nothing"


def _kill_and_resume(config: Path, run: Path, plan: list[tuple], retry: str = "by-dir") -> list[int]:
    """Run the plan: each step starts (or resumes) the run and ends it one way; returns exit codes.
    A fault step ("fault", point, file) kills the process at MLCLI_TEST_KILL_AT=point, which must be
    while it writes `file` (a path in the run directory; "progress.json" after the resume point's arrays).

    retry "by-dir" continues with `mlcli train --resume DIR`; "idempotent" reruns the same command
    with --resume, as a CI retry does (it also starts the run if the first attempt wrote nothing).
    """
    codes = []
    kept: list[str] = []  # history rows a resume point has covered: no later process may rewrite them
    for index, (how, arg, *writing) in enumerate(plan):
        if retry == "idempotent":
            args = ("train", config, "--output", run, "--resume")
        else:
            args = ("train", config, "--output", run) if index == 0 else ("train", "--resume", run)
        if how == "fault":  # crash inside the code path named by arg, e.g. between temp write and rename
            before = _temporaries(run) if run.exists() else set()
            process = _start(*args, env={"MLCLI_TEST_KILL_AT": arg})
            process.communicate(timeout=300)
            died = _died_writing(run, before)
            assert died == writing[0], f"step {index} ({arg}) was to die writing {writing[0]}, died writing {died}"
        else:
            process = _start(*args)
            _wait(process, run, arg)
            process.send_signal(how)
            process.communicate(timeout=120)
        codes.append(process.returncode)
        _assert_every_file_whole(run)
        assert history_lines(run)[:len(kept)] == kept, f"step {index} rewrote rows a resume point covered"
        kept = max(kept, kept_history(run), key=len)
    final = ("train", config, "--output", run, "--resume") if retry == "idempotent" else ("train", "--resume", run)
    point = saved_point(run)
    done = run_process(*final)
    assert done.returncode == 0, done.stderr
    assert_resumed(run, point, kept, done.stderr)
    return codes


def _assert_same_as_reference(run: Path, reference: Path) -> None:
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    for name in ("model.keras", "best.keras"):
        ours, theirs = _weights(run / name), _weights(reference / name)
        assert len(ours) == len(theirs)
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs)), name
    assert _history(run) == _history(reference)
    assert json.loads((run / "metrics.json").read_text()) == json.loads((reference / "metrics.json").read_text())


def test_sigkill_at_many_points_resumes_bit_identical(config, reference, tmp_path):
    """SIGKILL from outside wherever the run happens to be (the crash points inside writes are the next
    test's), each retry resuming by directory."""
    run = tmp_path / "run"
    plan = [
        # the first resume point's arrays written, its progress.json not: the next resume point is a
        # complete file that progress.json does not name yet
        ("fault", "state-before-progress:2", "progress.json"),
        (signal.SIGKILL, lambda p: p.get("step", 0) >= 21),  # in the middle of epoch 1
        (signal.SIGKILL, lambda p: p.get("epochs_completed", 0) >= 1),  # just after an epoch boundary
        (signal.SIGKILL, lambda p: p.get("epochs_completed", 0) >= 2 and p.get("step", 0) >= 14),
    ]
    codes = _kill_and_resume(config, run, plan)
    assert all(code == -signal.SIGKILL for code in codes), codes
    _assert_same_as_reference(run, reference)


def test_a_crash_inside_every_kind_of_write_resumes_bit_identical(config, reference, tmp_path):
    """Each process of the chain dies inside a different kind of atomic write (between the temporary
    file and its rename), or between a resume point's arrays and its progress.json; each is retried with
    the same command and --resume, and the chain still ends exactly where an uninterrupted run ends.
    N counts the writes of one process: a fresh one writes config.yaml, labels.json, run.json, then a
    resume point (arrays, progress.json) every 7 steps; a resumed one run.json first; an epoch's end
    history.csv and best.keras; the run's end model.keras, metrics.json, plots and run.json."""
    run = tmp_path / "run"
    plan = [
        ("fault", "before-rename:1", "config.yaml"),  # nothing but the lock and a temporary file left
        ("fault", "before-rename:2", "labels.json"),
        ("fault", "before-rename:3", "run.json"),  # the config written, the run not recorded yet
        ("fault", "before-rename:5", "state/progress.json"),  # the first resume point half written
        ("fault", "state-before-progress:2", "progress.json"),  # resume point 2's arrays, not its progress
        ("fault", "before-rename:1", "run.json"),  # a resumed process recording its start
        ("fault", "before-rename:20", "history.csv"),  # epoch 1's end: its row
        ("fault", "before-rename:3", "best.keras"),  # its row written, not its best checkpoint
        ("fault", "before-rename:54", "model.keras"),  # the last epoch ended: the final model
        ("fault", "before-rename:6", "run.json"),  # everything written but the run's status
    ]
    codes = _kill_and_resume(config, run, plan, retry="idempotent")
    assert all(code == -signal.SIGKILL for code in codes), codes
    _assert_same_as_reference(run, reference)


def test_resume_by_directory_after_a_kill_before_any_file_explains_itself(config, tmp_path):
    run = tmp_path / "run"
    process = _start("train", config, "--output", run, env={"MLCLI_TEST_KILL_AT": "before-rename:1"})
    process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL
    ran = run_cli("train", "--resume", run)
    assert ran.exit_code == 2, ran
    assert "stopped before it wrote its config" in ran.stderr and f"mlcli train CONFIG --output {run} --resume" in ran.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_saves_state_exits_130_and_resume_matches(config, reference, tmp_path, sig):
    run = tmp_path / "run"
    process = _start("train", config, "--output", run, "--json")
    # In the second epoch, so that the first one's history row must survive the resume.
    _wait(process, run, lambda p: p.get("step", 0) >= 7 and p.get("epochs_completed", 0) >= 1)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "--resume" in stderr and "Traceback" not in stderr
    document = json.loads(stdout)  # --json: the run's one document, even when a signal ends it
    assert document["status"] == "interrupted" and document["run_dir"] == str(run)
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "interrupted"
    assert manifest["interrupted"]["signal"] == signal.Signals(sig).name
    point, kept = saved_point(run), kept_history(run)
    assert point["step"] > 0 and point["epochs_completed"] >= 1 and len(kept) == 1 + point["epochs_completed"]
    assert document["epochs_completed"] == point["epochs_completed"]
    done = run_process("train", "--resume", run)
    assert done.returncode == 0, done.stderr
    assert_resumed(run, point, kept, done.stderr)
    _assert_same_as_reference(run, reference)


def test_a_live_run_holds_its_directory_and_a_dead_one_does_not(config, tmp_path):
    run = tmp_path / "run"
    process = _start("train", config, "--output", run, "--set", "training.epochs=200")
    _wait(process, run, lambda p: p.get("step", 0) >= 7)
    second = run_cli("train", config, "--output", run, "--resume", "--set", "training.epochs=200")
    assert second.exit_code == 2, second
    assert "in use by a live run" in second.stderr and f"pid {process.pid}" in second.stderr
    forced = run_cli("train", config, "--output", run, "--force")
    assert forced.exit_code == 2 and "in use" in forced.stderr
    process.kill()
    process.communicate(timeout=60)
    assert json.loads((run / "run.json").read_text())["status"] == "running"  # what a SIGKILL leaves
    # config differs (training.epochs is the one key a resume may change: issue 14)
    done = run_process("train", config, "--output", run, "--resume", "--set", "training.epochs=200",
                       "--set", "training.batch_size=32", "--quiet")
    assert done.returncode == 2 and "training.batch_size: 16 -> 32" in done.stderr
    done = run_process("train", config, "--output", run, "--resume", "--set", "training.epochs=200",
                       "--set", "training.early_stopping.patience=0", "--quiet")
    assert done.returncode == 2 and "training.early_stopping.patience: 5 -> 0" in done.stderr


def test_resume_is_idempotent(config, tmp_path):
    run = tmp_path / "run"
    first = run_cli("train", config, "--output", run, "--resume", "--quiet", "--json", "--set", "training.epochs=1")
    assert first.exit_code == 0, first  # no run there yet: starts one
    again = run_cli("train", config, "--output", run, "--resume", "--json", "--set", "training.epochs=1")
    assert again.exit_code == 0, again
    assert json.loads(again.stdout)["metrics"] == json.loads(first.stdout)["metrics"]
    assert "nothing to do" in again.stderr
    assert len(_history(run)) == 1
    by_dir = run_cli("train", "--resume", run, "--json", "--quiet")
    assert by_dir.exit_code == 0 and json.loads(by_dir.stdout)["status"] == "completed"


def test_resume_of_something_that_is_not_a_run(tmp_path):
    ran = run_cli("train", "--resume", tmp_path)
    assert ran.exit_code == 2 and "not an mlcli run directory" in ran.stderr
    for kind in ("train", "finetune"):
        ran = run_cli(kind, "--resume", tmp_path / "nope")
        assert ran.exit_code == 2 and f"--resume {tmp_path / 'nope'}: no such run directory" in ran.stderr, ran
    ran = run_cli("train", tmp_path / "nope.yaml", "--output", tmp_path / "r", "--resume")
    assert ran.exit_code == 2 and "nope.yaml: file not found — expected a YAML config file" in ran.stderr, ran


def test_resume_and_force_together_is_a_usage_error(config, tmp_path):
    ran = run_cli("train", config, "--output", tmp_path / "r", "--resume", "--force")
    assert ran.exit_code == 2 and "contradict" in ran.stderr


DIVERGING = """
name: diverging
data: {train: builtin:diabetes/train, validation: 0.2, label: target, task: regression}
model:
  layers:
    - {type: Dense, units: 16, activation: relu}
    - {type: Dense, units: 1}
optimizer:
  type: sgd
  # fine for the first epoch (9 steps), then a million times larger: loss becomes inf in epoch 2
  learning_rate: {type: ExponentialDecay, initial_learning_rate: 0.0001, decay_steps: 9, decay_rate: 1.0e+6,
                  staircase: true}
loss: mse
metrics: [mae]
training: {epochs: 4, batch_size: 32}
"""


def test_divergence_exits_6_and_keeps_the_last_good_model(write, tmp_path):
    config = write("d.yaml", DIVERGING)
    run = tmp_path / "run"
    ran = run_cli("train", config, "--output", run, "--json")
    assert ran.exit_code == 6, ran
    assert "loss became inf at epoch 2" in ran.stderr or "loss became nan at epoch 2" in ran.stderr
    doc = json.loads(ran.stdout)
    assert doc["status"] == "diverged" and doc["epochs_completed"] == 1
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "diverged"
    assert manifest["diverged"]["epoch"] == 2 and manifest["diverged"]["step"] >= 1
    weights = _weights(run / "model.keras")
    assert all(np.isfinite(w).all() for w in weights)
    first_epoch_state = json.loads((run / "state" / "progress.json").read_text())
    assert first_epoch_state["epochs_completed"] == 1
    with np.load(run / "state" / first_epoch_state["arrays"]) as saved:  # the model's variables at that point
        assert all(np.array_equal(w, saved[f"model_{i}"]) for i, w in enumerate(weights))
    assert len(_history(run)) == 1  # the diverged epoch is not recorded


def test_divergence_in_the_first_epoch_leaves_no_model(write, tmp_path):
    config = write("d.yaml", DIVERGING.replace("initial_learning_rate: 0.0001", "initial_learning_rate: 1000.0"))
    ran = run_cli("train", config, "--output", tmp_path / "run")
    assert ran.exit_code == 6, ran
    assert "no epoch had finished" in ran.stderr
    assert not (tmp_path / "run" / "model.keras").exists()
