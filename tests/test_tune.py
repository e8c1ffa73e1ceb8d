"""`mlcli tune` and `mlcli train --folds` (docs/contract.md §8) through the real CLI: the space checked before
any trial, a sweep's files, reproducible parameters, resume after SIGKILL (with --jobs 2 workers), a sweep
whose every trial fails, and K-fold cross-validation."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, run_cli

SWEEP = """\
name: sw
seed: 7
data:
  train: builtin:digits/train
  validation: 0.2
model:
  layers:
    - {type: Dense, units: 8, activation: relu}
    - {type: Dense, units: 10, activation: softmax}
training:
  epochs: 1
  batch_size: 128
tune:
  metric: val_accuracy
  trials: 3
  sampler: random
  pruner: none
  space:
    optimizer.learning_rate: {loguniform: [1.0e-3, 1.0e-1]}
    model.layers.0.units: {choice: [4, 8, 16]}
"""


def leaderboard(sweep: Path) -> list[dict]:
    with open(sweep / "leaderboard.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def params(rows: list[dict]) -> list[tuple]:
    return [(r["optimizer.learning_rate"], r["model.layers.0.units"]) for r in rows]


# ---- checked before the first trial (no TensorFlow, no trial) ----------------------------------------

def test_every_problem_of_the_space_at_once_with_file_and_line(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(SWEEP.replace("metric: val_accuracy", "metric: val_acuracy")
                      .replace("sampler: random", "sampler: grid")
                      .replace("model.layers.0.units: {choice: [4, 8, 16]}",
                               "model.layers.0.units: {choice: [4, -8]}\n"
                               "    optimizer.learnig_rate: {choice: [0.1]}\n"
                               "    model.layers.5.units: {choice: [3]}\n"
                               "    training.batch_size: {int: [0, 64]}\n"
                               "    model.layers.1.rate: {choice: [0.5]}"))
    text = config.read_text().splitlines()

    def at(key: str) -> str:  # "FILE:LINE: KEY:" of the line that writes KEY
        written = "metric" if key == "tune.metric" else key[len("tune.space."):]
        line = next(i for i, t in enumerate(text, 1) if t.strip().startswith(written + ":"))
        return f"{config}:{line}: {key}:"

    for command in (["tune", config, "--output", tmp_path / "s"], ["validate", config]):
        ran = run_cli(*command)
        assert ran.exit_code == 2, ran
        err = ran.stderr
        assert f"{at('tune.metric')} 'val_acuracy' is not reported" in err and "val_accuracy" in err
        assert f"{at('tune.space.optimizer.learning_rate')} loguniform has no grid" in err
        assert at("tune.space.model.layers.0.units") in err and "-8" in err
        assert at("tune.space.optimizer.learnig_rate") in err and "did you mean 'learning_rate'" in err
        assert f"{at('tune.space.model.layers.5.units')} index 5 is out of range" in err
        assert f"{at('tune.space.training.batch_size')} got 0" in err
        assert at("tune.space.model.layers.1.rate") in err and "no argument 'rate'" in err
        assert "Traceback" not in err
    assert not (tmp_path / "s").exists()  # refused before the sweep directory was made


def test_tune_needs_a_tune_section_and_a_known_gate(tmp_path):
    plain = tmp_path / "plain.yaml"
    plain.write_text(SWEEP.split("tune:")[0])
    ran = run_cli("tune", plain)
    assert ran.exit_code == 2 and "needs a tune: section" in ran.stderr, ran
    config = tmp_path / "sweep.yaml"
    config.write_text(SWEEP)
    ran = run_cli("tune", config, "--output", tmp_path / "s", "--fail-under", "val_acc=0.5")
    assert ran.exit_code == 2 and "gate metric 'val_acc' is never computed" in ran.stderr, ran


# ---- a sweep in this process ----------------------------------------------------------------------

@pytest.mark.slow
def test_a_sweep_writes_its_directory_is_reproducible_and_continues(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(SWEEP)
    sweep = tmp_path / "s"
    ran = run_cli("tune", config, "--output", sweep, "--json", "--trials", "2")
    assert ran.exit_code == 0, ran
    doc = json.loads(ran.stdout)
    assert set(doc) >= {"sweep_dir", "status", "trials", "best"} and doc["status"] == "completed"
    rows = leaderboard(sweep)
    assert [r["number"] for r in rows] == ["0", "1"] and {r["state"] for r in rows} == {"complete"}
    assert list(rows[0]) == ["number", "state", "optimizer.learning_rate", "model.layers.0.units", "val_accuracy",
                             "seconds", "reason"]
    # Each trial is a normal run directory whose metric is the leaderboard's value.
    for row in rows:
        run = sweep / "trials" / f"{int(row['number']):04d}"
        assert json.loads((run / "run.json").read_text())["status"] == "completed"
        assert json.loads((run / "metrics.json").read_text())["val_accuracy"] == pytest.approx(float(row["val_accuracy"]))
    best = max(rows, key=lambda r: float(r["val_accuracy"]))
    assert doc["best"]["trial"] == int(best["number"])
    assert doc["best"]["value"] == pytest.approx(float(best["val_accuracy"]))
    assert doc["best"]["params"]["model.layers.0.units"] == int(best["model.layers.0.units"])
    # best.yaml is that trial's config, with its parameters, and no tune: section: train accepts it.
    assert "\ntune:" not in (sweep / "best.yaml").read_text()
    printed = run_cli("validate", sweep / "best.yaml", "--print")
    assert printed.exit_code == 0, printed
    assert f"units: {best['model.layers.0.units']}" in printed.stdout
    assert (sweep / "plots" / "history.png").stat().st_size > 1000
    assert (sweep / "plots" / "importance.png").stat().st_size > 1000
    assert (sweep / "study.db").is_file()

    # The same seed gives the same parameters in a fresh sweep (its first trial).
    again = run_cli("tune", config, "--output", tmp_path / "again", "--trials", "1")
    assert again.exit_code == 0, again
    assert params(leaderboard(tmp_path / "again")) == params(rows)[:1]

    # Rerunning the same command: the sweep is complete, nothing trains; the gate sees the best trial.
    rerun = run_cli("tune", config, "--output", sweep, "--trials", "2",
                    "--fail-under", f"val_accuracy={float(best['val_accuracy']) + 0.01}")
    assert rerun.exit_code == 5, rerun
    assert "trial " not in rerun.stderr.replace("best: trial", "")  # no trial ran
    assert leaderboard(sweep) == rows
    # A raised --trials extends it by exactly the missing trials, and another config is refused.
    more = run_cli("tune", config, "--output", sweep, "--trials", "3", "--resume")
    assert more.exit_code == 0, more
    assert [r["number"] for r in leaderboard(sweep)] == ["0", "1", "2"]
    assert leaderboard(sweep)[:2] == rows
    # ... and its third trial is the one a straight 3-trial sweep would have sampled (seed + trials so far).
    assert params(leaderboard(sweep))[2] != params(rows)[1]
    other = run_cli("tune", config, "--output", sweep, "--set", "training.batch_size=64")
    assert other.exit_code == 2 and "training.batch_size: 128 -> 64" in other.stderr, other


@pytest.mark.slow
def test_the_pruner_stops_a_trial_from_its_per_epoch_values(tmp_path):
    # grid (seed 1): trial 0 takes 0.05, trial 1 takes 1e-6, whose second-epoch val_accuracy is far under
    # trial 0's: the median pruner stops it there (epochs count from 1; the first is never judged).
    config = tmp_path / "prune.yaml"
    config.write_text(SWEEP.replace("epochs: 1", "epochs: 3").replace("trials: 3", "trials: 2")
                      .replace("sampler: random", "sampler: grid\n  seed: 1").replace("pruner: none", "pruner: median")
                      .replace("optimizer.learning_rate: {loguniform: [1.0e-3, 1.0e-1]}",
                               "optimizer.learning_rate: {choice: [0.05, 1.0e-6]}")
                      .replace("    model.layers.0.units: {choice: [4, 8, 16]}\n", ""))
    sweep = tmp_path / "s"
    ran = run_cli("tune", config, "--output", sweep)
    assert ran.exit_code == 0, ran
    rows = leaderboard(sweep)
    assert [(r["optimizer.learning_rate"], r["state"], r["reason"]) for r in rows] == [
        ("0.05", "complete", ""), ("1e-06", "pruned", "pruned after epoch 2")]
    # The pruned trial's run stopped after its second epoch; its leaderboard value is the last one reported.
    history = list(csv.DictReader(open(sweep / "trials" / "0001" / "history.csv")))
    assert len(history) == 2
    assert float(rows[1]["val_accuracy"]) == pytest.approx(float(history[-1]["val_accuracy"]))
    # Every epoch of trial 0 was reported to the study.
    import sqlite3

    reported = sqlite3.connect(sweep / "study.db").execute(
        "select count(*) from trial_intermediate_values v join trials t on t.trial_id = v.trial_id "
        "where t.number = 0").fetchone()[0]
    assert reported == 3


@pytest.mark.slow
def test_a_sweep_whose_every_trial_fails_says_why_and_exits_with_their_code(tmp_path):
    config = tmp_path / "diverge.yaml"
    config.write_text(SWEEP.replace("trials: 3", "trials: 2").replace(
        "optimizer.learning_rate: {loguniform: [1.0e-3, 1.0e-1]}",
        "optimizer.learning_rate: {choice: [1.0e+30]}").replace("training:", "optimizer: {type: sgd}\ntraining:"))
    ran = run_cli("tune", config, "--output", tmp_path / "s", "--json")
    assert ran.exit_code == 6, ran  # every trial diverged: the code of a diverged run
    assert "every one of the 2 trial(s) failed: 2 × diverged: loss became" in ran.stderr
    assert json.loads(ran.stdout)["status"] == "failed"
    rows = leaderboard(tmp_path / "s")
    assert [r["state"] for r in rows] == ["fail", "fail"] and all(r["reason"].startswith("diverged") for r in rows)
    assert not (tmp_path / "s" / "best.yaml").exists()


# ---- resume after SIGKILL, and --jobs 2 -------------------------------------------------------------

@pytest.mark.slow
def test_a_killed_sweep_resumes_its_interrupted_trial_with_two_workers(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(SWEEP.replace("epochs: 1", "epochs: 2").replace("trials: 3", "trials: 2"))
    sweep = tmp_path / "s"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    command = [sys.executable, "-m", "mlcli", "tune", str(config), "--output", str(sweep)]
    # Killed (SIGKILL) while trial 1 saves the state of its second epoch: trial 0 is finished, trial 1
    # holds its first epoch.
    killed = subprocess.run(command, env={**env, "MLCLI_TEST_KILL_AT": "state-before-progress:4"},
                            capture_output=True, text=True, timeout=240)
    assert killed.returncode == -9, killed.stderr
    first = sweep / "trials" / "0001"
    assert json.loads((first / "state" / "progress.json").read_text())["epochs_completed"] == 1
    kept_row = (first / "history.csv").read_text().splitlines()[1]

    # Rerun with one more trial and two workers: one adopts trial 1 and continues it, one runs trial 2.
    rerun = subprocess.run(command + ["--trials", "3", "--jobs", "2", "--json"], env=env, capture_output=True,
                           text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr
    assert "trial 2/3 complete (resumed)" in rerun.stderr
    doc = json.loads(rerun.stdout)
    assert [t["state"] for t in doc["trials"]] == ["complete"] * 3
    history = (first / "history.csv").read_text().splitlines()
    assert len(history) == 3 and history[1] == kept_row  # epoch 1 kept as written, epoch 2 trained after it
    assert json.loads((first / "run.json").read_text())["status"] == "completed"
    # Trial 0 was run by the killed process; trials 1 and 2 by the two workers, one each.
    import sqlite3

    workers = dict(sqlite3.connect(sweep / "study.db").execute(
        "select t.number, a.value_json from trials t join trial_user_attributes a on a.trial_id = t.trial_id "
        "where a.key = 'worker'"))
    assert len({workers[0], workers[1], workers[2]}) == 3, workers


# ---- cross-validation ---------------------------------------------------------------------------------

def test_folds_hold_out_every_row_once_and_each_class_in_each_fold():
    from mlcli.data.prepare import fold_split

    labels = np.array([0] * 10 + [1] * 7 + [2] * 5)
    held = [fold_split(labels, len(labels), i, 3, seed=1)[1] for i in (1, 2, 3)]
    assert sorted(np.concatenate(held).tolist()) == list(range(len(labels)))
    for part in held:
        assert set(labels[part]) == {0, 1, 2}
        assert 6 <= len(part) <= 8
    assert [p.tolist() for p in held] == [fold_split(labels, len(labels), i, 3, seed=1)[1].tolist() for i in (1, 2, 3)]


@pytest.mark.slow
def test_folds_beyond_the_smallest_class_or_below_two_are_usage_errors(tmp_path):
    data = tmp_path / "small.csv"
    data.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{'x' if i < 8 else 'y'}\n" for i in range(10)))
    config = tmp_path / "small.yaml"
    config.write_text(f"data: {{train: {data}, label: label, validation: 0.2}}\nmodel:\n  layers:\n"
                      "    - {type: Dense, units: 2, activation: softmax}\ntraining: {epochs: 1}\n")
    ran = run_cli("train", config, "--folds", "3", "--output", tmp_path / "cv")
    assert ran.exit_code == 2, ran
    assert "--folds 3: class 'y' has only 2 training row(s)" in ran.stderr and "--folds 2 or fewer" in ran.stderr
    assert not (tmp_path / "cv" / "fold-1" / "run.json").exists()
    ran = run_cli("train", config, "--folds", "1")
    assert ran.exit_code == 2 and "at least 2 folds" in ran.stderr, ran


@pytest.mark.slow
def test_train_folds_writes_a_run_per_fold_and_cv_json(tmp_path):
    cv = tmp_path / "cv"
    ran = run_cli("train", REPO / "configs" / "tiny.yaml", "--folds", "2", "--output", cv, "--json",
                  "--set", "training.epochs=1", "--set", "data.test=null")
    assert ran.exit_code == 0, ran
    doc = json.loads(ran.stdout)
    saved = json.loads((cv / "cv.json").read_text())
    assert saved["folds"] == 2 and [r["run_dir"] for r in saved["runs"]] == [str(cv / "fold-1"), str(cv / "fold-2")]
    values = [json.loads((cv / f"fold-{i}" / "metrics.json").read_text())["val_accuracy"] for i in (1, 2)]
    assert saved["mean"]["val_accuracy"] == pytest.approx(statistics.fmean(values), abs=1e-9)
    assert saved["std"]["val_accuracy"] == pytest.approx(statistics.pstdev(values), abs=1e-9)
    assert doc["mean"] == saved["mean"]
    # The folds' validation splits are halves of data.train that do not overlap: each holds out its own rows.
    rows = [json.loads((cv / f"fold-{i}" / "run.json").read_text())["rows"] for i in (1, 2)]
    assert rows[0]["validation"] + rows[1]["validation"] == rows[0]["train"] + rows[0]["validation"]
    # A fold is a normal run: evaluate rebuilds its validation split from its config.yaml.
    evaluated = run_cli("evaluate", cv / "fold-2", "--json")
    assert evaluated.exit_code == 0, evaluated
    assert json.loads(evaluated.stdout)["metrics"]["accuracy"] == pytest.approx(values[1], abs=1e-4)
