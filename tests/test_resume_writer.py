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


def test_each_point_holds_the_values_of_its_own_moment_though_its_arrays_are_reused(tmp_path):
    """The writer copies a point's values into the last point's arrays (no new memory each epoch): the
    file of every point must still hold the values at its own save, never those of an earlier one."""
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    writer = resume.PointWriter(tmp_path)
    (tmp_path / files.STATE).mkdir()
    saved = []
    for epoch in (1, 2, 3):
        kernel = np.full((3, 2), float(epoch), dtype=np.float32)
        model.layers[0].kernel.assign(kernel)
        writer.save(model, {"epochs_completed": epoch, "step": 0}, partial_metrics=False, early_stopping_weights=None)
        saved.append(writer._last["model_0"])
        writer.wait()
        point = resume.load_point(tmp_path, resume.read_progress(tmp_path))
        np.testing.assert_array_equal(point["model_0"], kernel)
    assert saved[0] is saved[1] is saved[2]  # one set of arrays for the whole run


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "uint8", "bool", "float16"])
def test_a_point_file_reads_back_as_np_savez_would(tmp_path, dtype):
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {"model_0": rng.normal(size=(3, 5)).astype(dtype), "model_1": np.asarray(7, dtype=dtype),
              "optimizer_0": np.zeros((0, 4), dtype=dtype), "best_0": rng.normal(size=(2, 3, 4)).astype(dtype)[:, ::2]}
    with open(tmp_path / "ours.npz", "wb") as handle:
        resume.write_npz(handle, arrays)
    np.savez(tmp_path / "numpys.npz", **arrays)
    with np.load(tmp_path / "ours.npz", allow_pickle=False) as ours, np.load(tmp_path / "numpys.npz") as theirs:
        assert ours.files == theirs.files == list(arrays)
        for name in arrays:
            assert ours[name].dtype == arrays[name].dtype and ours[name].shape == arrays[name].shape
            np.testing.assert_array_equal(ours[name], theirs[name])
