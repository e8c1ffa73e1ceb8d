"""Issue 17 item 7's bad inputs that tests/test_images.py and tests/test_backbone.py leave out, through the real
CLI: a preset of the wrong kind for the data (an image preset on a table, a text preset on images), and a corrupt
image met while the files are read at every epoch (data.stream: true) — named, exit 3, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from test_backbone import image_folder, refused, tiny_bert_preset, tiny_resnet_preset, write_config
from test_images import config_text, make_folder


def _reviews(path: Path) -> Path:
    rows = ["review,label"] + [f"{'great' if i % 2 else 'awful'} movie,{'pos' if i % 2 else 'neg'}" for i in range(12)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.slow
def test_an_image_preset_on_a_table_and_a_text_preset_on_images_are_exit_2(tmp_path):
    resnet = tiny_resnet_preset(tmp_path / "resnet")
    table = {"data": {"train": str(_reviews(tmp_path / "reviews.csv")), "label": "label", "validation": None,
                      "features": [{"name": "review", "type": "text"}]},
             "model": {"backbone": {"preset": str(resnet)},
                       "layers": [{"type": "Dense", "units": 2, "activation": "softmax"}]},
             "training": {"epochs": 1, "batch_size": 4}}
    (tmp_path / "image_on_table.yaml").write_text(yaml.safe_dump(table))
    ran = run_cli("train", tmp_path / "image_on_table.yaml", "--output", tmp_path / "a")
    refused(ran, 2, "model.backbone", f"{resnet} holds a ResNetBackbone, an image backbone",
            "an image preset reads images: set data.image")
    assert not (tmp_path / "a").exists()

    # the same preset on a table without a text column: validate says so before any TensorFlow
    table["data"]["features"] = None
    (tmp_path / "no_text.yaml").write_text(yaml.safe_dump(table))
    refused(run_cli("validate", tmp_path / "no_text.yaml"), 2, "data.features",
            "a text preset (model.backbone.preset) reads one text column")

    bert = tiny_bert_preset(tmp_path / "bert")
    images = image_folder(tmp_path / "images", per_class=4)
    config = write_config(tmp_path / "text_on_images.yaml", images, {"preset": str(bert)})
    ran = run_cli("train", config, "--output", tmp_path / "b")
    refused(ran, 2, "model.backbone", f"{bert} holds a BertBackbone, which does not take images",
            "a text preset reads a text column")
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_a_corrupt_image_read_at_every_epoch_is_exit_3_naming_it(tmp_path):
    train = make_folder(tmp_path / "images", per_class=3)
    bad = train / "circle" / "cut.png"
    bad.write_bytes((train / "circle" / "00.png").read_bytes()[:40])  # a valid header, the pixels cut off
    config = tmp_path / "s.yaml"
    config.write_text(config_text(train, "stream: true", epochs=1))  # read from the files, not decoded up front
    out = tmp_path / "run"
    ran = run_cli("train", config, "--output", out)
    refused(ran, 3, f"data.train: {bad}: cannot be decoded as an image", "remove the file or replace it")
    assert not (out / "model.keras").exists()
    if (out / "run.json").exists():  # the run had started: it says it failed, and why
        manifest = json.loads((out / "run.json").read_text())
        assert manifest["status"] == "failed" and "cut.png" in json.dumps(manifest), manifest
