"""The shipped two-phase transfer-learning recipe (configs/shapes_mobilenet.yaml, then
configs/shapes_mobilenet_finetune.yaml; README "Two-phase transfer learning") end to end through the real
CLI, as shipped — its backbone, selectors and learning rates; 32x32 images instead of 96x96 — on a few of the
bundled shapes: the head on a frozen backbone, the top blocks at the lower rate, evaluate, predict a folder.
Random weights (weights: null, as shipped): nothing is downloaded."""

from __future__ import annotations

import json
import shutil
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CONFIGS, run_cli
from test_backbone import _weights

from mlcli.data.image_files import builtin_folder


def _few_shapes(root: Path, per_class: int) -> tuple[Path, Path]:
    """The first `per_class` bundled images of each class, train and test."""
    for split, count in (("train", per_class), ("test", 2)):
        source = builtin_folder(f"builtin:shapes/{split}", "data.train")
        for folder in sorted(p for p in source.iterdir() if p.is_dir()):
            (root / split / folder.name).mkdir(parents=True)
            for image in sorted(folder.iterdir())[:count]:
                shutil.copy(image, root / split / folder.name / image.name)
    return root / "train", root / "test"


@pytest.mark.slow
def test_the_shipped_two_phase_recipe_trains_finetunes_evaluates_and_predicts(tmp_path):
    train, test = _few_shapes(tmp_path / "shapes", per_class=4)
    # 32x32 (MobileNetV3Small's smallest) instead of the recipe's 96x96 keeps the test short; the recipe was
    # run as shipped, at 96x96 (docs/performance.md "Images and backbones").
    data = ["--set", f"data.train={train}", "--set", f"data.test={test}", "--set", "data.validation=null",
            "--set", "data.image.size=[32,32]"]
    ran = run_cli("train", CONFIGS / "shapes_mobilenet.yaml", "--output", tmp_path / "phase1", *data,
                  "--set", "training.epochs=1")
    assert ran.exit_code == 0, ran
    assert "backbone mobile_net_v3_small: 0 trainable" in ran.stderr, ran
    phase1 = json.loads((tmp_path / "phase1" / "run.json").read_text())
    assert phase1["layers"][0]["name"] == "backbone" and phase1["layers"][0]["trainable_params"] == 0

    ran = run_cli("finetune", CONFIGS / "shapes_mobilenet_finetune.yaml", "--from", tmp_path / "phase1",
                  "--output", tmp_path / "phase2", *data, "--set", "training.epochs=1")
    assert ran.exit_code == 0, ran
    config = yaml.safe_load((tmp_path / "phase2" / "config.yaml").read_text())
    assert config["optimizer"]["learning_rate"] == pytest.approx(1e-4)  # ten times lower than phase 1's
    row = json.loads((tmp_path / "phase2" / "run.json").read_text())["layers"][0]
    assert row["name"] == "backbone" and 0 < row["trainable_params"] < row["params"], row

    # exactly the recipe's top blocks moved; everything else in the backbone kept phase 1's values
    globs = [selector.split("/", 1)[1] for selector in
             yaml.safe_load((CONFIGS / "shapes_mobilenet_finetune.yaml").read_text())["finetune"]["unfreeze"]]
    before, after = _weights(tmp_path / "phase1" / "model.keras"), _weights(tmp_path / "phase2" / "model.keras")
    opened = {name for name in after if any(fnmatch(name, glob) for glob in globs) and after[name]}
    assert {"expanded_conv_9_project", "expanded_conv_10_project", "conv_1"} <= opened, sorted(opened)
    for name, values in after.items():
        same = all(np.array_equal(a, b) for a, b in zip(values, before[name]))
        assert same != (name in opened), f"{name}: {'unfrozen but unchanged' if same else 'frozen but changed'}"

    ran = run_cli("evaluate", tmp_path / "phase2", "--json")
    assert ran.exit_code == 0, ran
    metrics = json.loads(ran.stdout)["metrics"]
    assert 0.0 <= metrics["accuracy"] <= 1.0 and np.isfinite(metrics["loss"]), metrics

    ran = run_cli("predict", tmp_path / "phase2", test)
    assert ran.exit_code == 0, ran
    lines = ran.stdout.splitlines()
    assert lines[0] == "path,prediction,prob_circle,prob_square,prob_triangle", lines[0]
    assert len(lines) == 1 + 6 and all(line.split(",")[1] in ("circle", "square", "triangle") for line in lines[1:])
