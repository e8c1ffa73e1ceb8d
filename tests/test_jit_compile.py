"""training.jit_compile (XLA): checked like every key, reaching model.compile, recorded in run.json and
the summary, and a run compiled with it resumes and exports like any other."""

from __future__ import annotations

import json

import pytest
from conftest import CONFIGS, run_cli

from mlcli.runtime import DeviceChoice, jit_compile_for


def _facts(run) -> dict:
    return json.loads((run / "run.json").read_text())["distribute"]


def _history(run) -> list[dict]:
    lines = (run / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    return [{k: v for k, v in zip(header, line.split(",")) if k != "seconds"} for line in lines[1:]]


def test_auto_is_off_on_the_cpu_and_keras_auto_on_a_gpu_and_explicit_values_are_kept():
    cpu, gpu = DeviceChoice("cpu"), DeviceChoice("gpu", ("/physical_device:GPU:0",))
    assert jit_compile_for("auto", cpu) is False
    assert jit_compile_for("auto", gpu) == "auto"
    for device in (cpu, gpu):
        assert jit_compile_for(True, device) is True
        assert jit_compile_for(False, device) is False


@pytest.mark.parametrize("value", ["maybe", "1", "'true'", "[true]"])
def test_a_bad_value_is_exit_2_naming_the_key(value, tmp_path):
    ran = run_cli("validate", CONFIGS / "tiny.yaml", "--set", f"training.jit_compile={value}")
    assert ran.exit_code == 2, ran
    assert "training.jit_compile" in ran.stderr and "expected auto, true or false" in ran.stderr, ran
    assert "Traceback" not in ran.stderr


@pytest.mark.slow
def test_jit_compile_reaches_compile_is_recorded_and_a_run_with_it_resumes_and_exports(tmp_path):
    # runtime.deterministic turns XLA off in Keras (not every XLA op is deterministic): off here.
    common = ("--set", "runtime.deterministic=false", "--set", "training.epochs=1")
    seen = {}
    for value in ("true", "false", "auto"):
        run = tmp_path / value
        ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", run, "--json", *common,
                      "--set", f"training.jit_compile={value}")
        assert ran.exit_code == 0, ran
        seen[value] = json.loads(ran.stdout)["distribute"]["jit_compile"]
        assert _facts(run)["jit_compile"] == seen[value]
    assert seen == {"true": True, "false": False, "auto": False}  # auto: off on this CPU

    # The XLA run goes on to a second epoch and ends where two epochs in one go end.
    run = tmp_path / "true"
    ran = run_cli("train", "--resume", run, "--set", "training.epochs=2", "--json")
    assert ran.exit_code == 0, ran
    assert json.loads(ran.stdout)["epochs_completed"] == 2 and _facts(run)["jit_compile"] is True
    straight = tmp_path / "straight"
    assert run_cli("train", CONFIGS / "tiny.yaml", "--output", straight, "--quiet", *common,
                   "--set", "training.epochs=2", "--set", "training.jit_compile=true").exit_code == 0
    resumed, whole = _history(run), _history(straight)
    assert len(resumed) == len(whole) == 2
    for a, b in zip(resumed, whole):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-5)
        assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), rel=1e-5)

    exported = tmp_path / "saved"
    ran = run_cli("export", run, "--format", "savedmodel", "--output", exported)
    assert ran.exit_code == 0, ran
    assert "matches model.keras" in ran.stderr and (exported / "saved_model.pb").is_file()


@pytest.mark.slow
def test_jit_compile_true_with_determinism_says_keras_turned_it_off(tmp_path):
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "run", "--json",
                  "--set", "training.epochs=1", "--set", "training.jit_compile=true")  # tiny.yaml: deterministic
    assert ran.exit_code == 0, ran
    assert "training.jit_compile true -> false" in ran.stderr and "runtime.deterministic" in ran.stderr
    assert json.loads(ran.stdout)["distribute"]["jit_compile"] is False
