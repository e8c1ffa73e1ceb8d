"""training.cache_frozen_backbone (mlcli.training.frozen_backbone): a wholly frozen keras.applications
backbone's outputs are computed once and the layers after it train on them. The promise is the same
math: the same history and weights as running the whole model at every step, a resume in the middle
of an epoch that ends as the run left alone, and no cache where it would change the training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_cli
from test_backbone import image_folder

pytestmark = pytest.mark.slow

NOTE = "its outputs for the"  # the run's note when the cache is in use


def _config(tmp_path: Path, name: str, **training) -> Path:
    images = tmp_path / "images"
    if not images.exists():
        image_folder(images, per_class=8)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "seed": 7,
        "data": {"train": str(images), "validation": 0.25, "image": {"size": [32, 32], "channels": 3}},
        "model": {"backbone": {"type": "MobileNetV3Small", "weights": None, "minimalistic": True},
                  "layers": [{"type": "Dense", "units": 8, "activation": "relu"},
                             {"type": "Dropout", "rate": 0.3},  # random in training: its state must resume too
                             {"type": "Dense", "units": 2, "activation": "softmax"}]},
        "optimizer": {"type": "adam", "learning_rate": 0.01},
        "training": {"epochs": 3, "batch_size": 4, "steps_per_execution": 1, **training},
        "finetune": {"freeze": ["backbone"]},
    }))
    return path


def _train(config: Path, run: Path, *args: str):
    ran = run_cli("train", config, "--output", run, *args)
    assert ran.exit_code == 0, ran
    return ran


def _history(run: Path) -> list[dict[str, float]]:
    lines = (run / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    return [{k: float(v) for k, v in zip(header, line.split(",")) if k != "seconds"} for line in lines[1:]]


def _head_weights(run: Path) -> list[np.ndarray]:
    import keras

    model = keras.saving.load_model(run / "model.keras")
    return [np.asarray(w) for layer in model.layers[1:] for w in layer.get_weights()]


def test_the_cached_run_trains_the_same_model_as_the_whole_model_at_every_step(tmp_path):
    cached = _train(_config(tmp_path, "cached"), tmp_path / "cached")
    whole = _train(_config(tmp_path, "whole", cache_frozen_backbone=False), tmp_path / "whole")
    assert NOTE in cached.stderr and NOTE not in whole.stderr, (cached.stderr, whole.stderr)

    ours, theirs = _history(tmp_path / "cached"), _history(tmp_path / "whole")
    assert len(ours) == len(theirs) == 3 and set(ours[0]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    for mine, other in zip(ours, theirs):  # the backbone's outputs computed in batches of another size
        assert mine == pytest.approx(other, rel=1e-4, abs=1e-6), (mine, other)
    assert ours[0]["loss"] != ours[2]["loss"]  # it trained
    for mine, other in zip(_head_weights(tmp_path / "cached"), _head_weights(tmp_path / "whole")):
        np.testing.assert_allclose(mine, other, rtol=1e-4, atol=1e-6)
    # the test metrics come from the whole saved model, as ever
    metrics = json.loads((tmp_path / "cached" / "metrics.json").read_text())
    assert metrics == pytest.approx(json.loads((tmp_path / "whole" / "metrics.json").read_text()), rel=1e-4)


def test_a_cached_run_stopped_mid_epoch_resumes_to_the_run_left_alone(tmp_path, monkeypatch):
    from mlcli.training import callbacks as cb

    alone = tmp_path / "alone"
    _train(_config(tmp_path, "alone"), alone)

    # A SIGTERM after the first step of the second epoch: the run saves a mid-epoch point and stops.
    steps = {"seen": 0}
    original = cb.InterruptGuard.on_train_batch_end

    def stop_once(self, batch, logs=None):
        steps["seen"] += 1
        if steps["seen"] == 4:  # 12 training images, batch 4: steps 1-3 are epoch 1
            self.signal_name = "SIGTERM"
        original(self, batch, logs)

    monkeypatch.setattr(cb.InterruptGuard, "on_train_batch_end", stop_once)
    stopped = tmp_path / "stopped"
    ran = run_cli("train", _config(tmp_path, "stopped"), "--output", stopped)
    assert ran.exit_code == 130, ran
    progress = json.loads((stopped / "state" / "progress.json").read_text())
    assert (progress["epochs_completed"], progress["step"]) == (1, 1), progress
    monkeypatch.setattr(cb.InterruptGuard, "on_train_batch_end", original)

    ran = run_cli("train", "--resume", stopped)
    assert ran.exit_code == 0, ran
    assert NOTE in ran.stderr, ran.stderr
    assert _history(stopped) == _history(alone)
    for mine, other in zip(_head_weights(stopped), _head_weights(alone)):
        np.testing.assert_array_equal(mine, other)


@pytest.mark.parametrize("change, why", [
    ({"data": {"augment": [{"type": "RandomFlip", "mode": "horizontal"}]}}, "data.augment"),
    ({"finetune": {"freeze": ["backbone"], "unfreeze": ["backbone/expanded_conv_10*"]}}, "part of it trainable"),
    ({"finetune": {"freeze": []}}, "a trainable backbone"),
])
def test_no_cache_where_it_would_change_the_training(tmp_path, change, why):
    config = _config(tmp_path, "base")
    document = yaml.safe_load(config.read_text())
    for section, values in change.items():
        document[section] = {**document.get(section, {}), **values}
    document["training"]["epochs"] = 1
    config.write_text(yaml.safe_dump(document))
    ran = _train(config, tmp_path / "run")
    assert NOTE not in ran.stderr, (why, ran.stderr)
