"""model.backbone through the real CLI (docs/contract.md §7): keras.applications by name with its
preprocessing inside model.keras, validate's checks without TensorFlow, weights that do not fit,
offline exit 4 within seconds (nothing is ever downloaded: the network check is pointed at a closed
local port), a frozen backbone in train, and finetune reaching into it."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_cli


def refused(ran, code: int, *texts: str) -> None:
    assert ran.exit_code == code, ran
    assert ran.exception is None, ran
    assert "Traceback" not in ran.stderr, ran
    for text in texts:
        assert text in ran.stderr, (text, ran)


def image_folder(root: Path, per_class: int = 6, size: int = 32) -> Path:
    """Two classes of tiny RGB PNGs: dark squares and bright ones (seeded)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, base in (("dark", 40), ("light", 200)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(root / label / f"{i:02d}.png")
    return root


def write_config(path: Path, images: Path, backbone: dict, **sections) -> Path:
    config = {
        "data": {"train": str(images), "validation": 0.25, "image": {"size": [32, 32], "channels": 3}},
        "model": {"backbone": backbone, "layers": [{"type": "Dense", "units": 2, "activation": "softmax"}]},
        "optimizer": {"type": "adam", "learning_rate": 0.01},
        "training": {"epochs": 1, "batch_size": 8},
        **sections,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def closed_port() -> int:
    """A local TCP port nothing listens on (connections to it are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- validate: no TensorFlow, every problem named ---------------------------------------------------

def test_validate_names_the_backbone_problems(tmp_path):
    images = image_folder(tmp_path / "images", per_class=2)
    ran = run_cli("validate", write_config(tmp_path / "a.yaml", images, {"type": "MobileNetV3Smal", "weights": None}))
    refused(ran, 2, "model.backbone.type", "'MobileNetV3Smal' is not a keras.applications model",
            "did you mean 'MobileNetV3Small'?")

    ran = run_cli("validate", write_config(tmp_path / "b.yaml", images,
                                           {"type": "InceptionV3", "weights": None, "include_top": True}))
    refused(ran, 2, "data.image.size", "[32, 32] is below InceptionV3's smallest input, 75x75",
            "model.backbone.include_top", "mlcli sets include_top itself")

    # a model without a backbone: validate alone cannot tell (a finetune config's model is its parent's);
    # building the model it trains (--deep, as train does) refuses the selector
    without = write_config(tmp_path / "c.yaml", image_folder(tmp_path / "more", per_class=4), None,
                           finetune={"freeze": ["backbone"]})
    assert run_cli("validate", without).exit_code == 0
    ran = run_cli("validate", without, "--deep")
    refused(ran, 2, "finetune.freeze.0", "reaches into model.backbone, but the model has none")

    table = tmp_path / "t.csv"
    table.write_text("x,label\n1,a\n2,b\n")
    config = {"data": {"train": str(table)}, "model": {"backbone": {"type": "ResNet50"},
                                                       "layers": [{"type": "Dense", "units": 2}]}}
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(config))
    refused(run_cli("validate", tmp_path / "d.yaml"), 2, "ResNet50 takes images, but the data are a table")


# ---- weights: a file that does not fit, a download that cannot happen -----------------------------

@pytest.mark.slow
def test_weights_that_do_not_fit_name_the_layer_and_imagenet_offline_is_exit_4_within_seconds(tmp_path, monkeypatch):
    import keras

    images = image_folder(tmp_path / "images", per_class=4)
    other = tmp_path / "alpha075.weights.h5"  # the same family with other arguments: other shapes
    keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 3),
                                        alpha=0.75).save_weights(other)
    ran = run_cli("train", write_config(tmp_path / "w.yaml", images, {"type": "MobileNetV3Small", "weights": str(other)}),
                  "--output", tmp_path / "w")
    refused(ran, 3, f"model.backbone.weights: {other} does not fit MobileNetV3Small: layer expanded_conv",
            "but the file holds")
    assert not (tmp_path / "w" / "model.keras").exists()

    ran = run_cli("train", write_config(tmp_path / "m.yaml", images, {"type": "MobileNetV3Small",
                                                                       "weights": str(tmp_path / "none.h5")}),
                  "--output", tmp_path / "m")
    refused(ran, 3, f"model.backbone.weights: {tmp_path / 'none.h5'}: no such file")

    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setenv("MLCLI_NETWORK_PROBE", f"127.0.0.1:{closed_port()}")
    started = time.monotonic()
    ran = run_cli("train", write_config(tmp_path / "i.yaml", images, {"type": "MobileNetV3Small", "weights": "imagenet"}),
                  "--output", tmp_path / "i")
    elapsed = time.monotonic() - started
    refused(ran, 4, "offline: model.backbone: MobileNetV3Small weights: imagenet: https://storage.googleapis.com/"
            "tensorflow/keras-applications/mobilenet_v3/", "cannot be downloaded", "weights: null",
            str(home / "models"))
    assert elapsed < 30, elapsed
    assert not list(home.rglob("*.h5"))  # nothing was downloaded


# ---- a frozen backbone, then finetune into its top blocks ------------------------------------------

def _weights(model_path: Path) -> dict[str, list[np.ndarray]]:
    import keras

    model = keras.saving.load_model(model_path)  # plain Keras, safe mode: the preprocessing is Keras layers
    backbone = model.get_layer("backbone")
    from mlcli.model.backbone import inner_layers

    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in inner_layers(backbone)}


@pytest.mark.slow
def test_frozen_backbone_then_finetune_the_top_blocks(tmp_path):
    images = image_folder(tmp_path / "images")
    config = write_config(tmp_path / "phase1.yaml", images, {"type": "MobileNetV3Small", "weights": None,
                                                              "minimalistic": True},
                          finetune={"freeze": ["backbone"]})
    ran = run_cli("train", config, "--output", tmp_path / "run1")
    assert ran.exit_code == 0, ran
    assert "backbone mobile_net_v3_small: 0 trainable" in ran.stderr, ran
    rows = json.loads((tmp_path / "run1" / "run.json").read_text())["layers"]
    assert rows[0]["name"] == "backbone" and rows[0]["trainable_params"] == 0
    assert rows[0]["frozen"] == rows[0]["params"] > 100_000
    # one Dense head after the backbone; its automatic name (dense, dense_3...) counts the Dense layers
    # this process built before, which depends on the tests a pytest-xdist worker ran first
    assert [(r["type"], re.sub(r"_\d+$", "", r["name"])) for r in rows[1:]] == [("Dense", "dense")], rows

    # A frozen BatchNormalization runs in inference mode: with random initial weights its moving
    # statistics are still exactly Keras's initial zeros and ones after an epoch of training.
    before = _weights(tmp_path / "run1" / "model.keras")
    norms = [name for name in before if name.endswith("_bn") or "batch_norm" in name]
    assert len(norms) > 10
    for name in norms:
        _, _, mean, variance = before[name]
        assert np.all(mean == 0) and np.all(variance == 1), name

    phase2 = tmp_path / "phase2.yaml"
    phase2.write_text(yaml.safe_dump({
        "optimizer": {"type": "adam", "learning_rate": 0.001},
        "finetune": {"freeze": ["backbone"], "unfreeze": ["backbone/expanded_conv_10*"]},
    }))
    ran = run_cli("finetune", phase2, "--from", tmp_path / "run1", "--output", tmp_path / "run2", "--verbose",
                  env={"COLUMNS": "200"})
    assert ran.exit_code == 0, ran
    assert "mobile_net_v3_small" in ran.stderr and " trainable, " in ran.stderr and " frozen" in ran.stderr
    assert "backbone/expanded_conv_10_project" in ran.stderr, ran  # --verbose: every layer inside
    after = _weights(tmp_path / "run2" / "model.keras")
    opened = [name for name in after if name.startswith("expanded_conv_10")]
    assert opened
    for name, values in after.items():
        same = all(np.array_equal(a, b) for a, b in zip(values, before[name]))
        if name in opened and values:
            assert not same, f"{name} was unfrozen but did not change"
        else:
            assert same, f"{name} was frozen but changed"

    ran = run_cli("finetune", "--from", tmp_path / "run1", "--output", tmp_path / "run3",
                  "--set", "finetune.unfreeze=[backbone/block_99*]")
    refused(ran, 2, "finetune.unfreeze.0", "'backbone/block_99*' matches no layer inside the backbone",
            "expanded_conv")


# ---- KerasHub image presets from a directory --------------------------------------------------------

def tiny_resnet_preset(path: Path) -> Path:
    """A KerasHub preset directory with random weights, written at test time (nothing downloaded)."""
    import keras_hub

    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(None, None, 3))
    backbone.save_to_preset(str(path))
    keras_hub.layers.ResNetImageConverter(image_size=(32, 32), scale=1 / 255.0).save_to_preset(str(path))
    return path


@pytest.mark.slow
def test_image_preset_directory_trains_predicts_and_loads(tmp_path, monkeypatch):
    import keras

    images = image_folder(tmp_path / "images", per_class=4)
    preset = tiny_resnet_preset(tmp_path / "preset")
    config = write_config(tmp_path / "p.yaml", images, {"preset": str(preset), "pooling": "avg"},
                          finetune={"freeze": ["backbone/*_conv"]})
    ran = run_cli("train", config, "--output", tmp_path / "run")
    assert ran.exit_code == 0, ran
    row = json.loads((tmp_path / "run" / "run.json").read_text())["layers"][0]
    assert row["name"] == "backbone" and 0 < row["frozen"] < row["params"] and row["trainable_params"] > 0, row

    ran = run_cli("predict", tmp_path / "run", images / "dark")
    assert ran.exit_code == 0, ran
    assert ran.stdout.splitlines()[0].startswith("path,prediction,prob_dark,prob_light"), ran
    assert len(ran.stdout.splitlines()) == 5

    model = keras.saving.load_model(tmp_path / "run" / "model.keras")  # keras_hub is imported: its classes load
    assert model.get_layer("backbone").get_layer("res_net_image_converter").image_size == (32, 32)

    # A preset directory that is missing, or damaged: exit 3 naming the file.
    ran = run_cli("train", write_config(tmp_path / "m.yaml", images, {"preset": str(tmp_path / "nope")}),
                  "--output", tmp_path / "m")
    refused(ran, 3, f"model.backbone.preset: {tmp_path / 'nope'}: no such directory")
    (preset / "config.json").write_text("{not json")
    ran = run_cli("train", config, "--output", tmp_path / "c")
    refused(ran, 3, f"model.backbone.preset: {preset / 'config.json'}: not a readable KerasHub preset config")

    # A preset NAME that cannot be downloaded: exit 4 within seconds, with the URL.
    monkeypatch.setenv("MLCLI_NETWORK_PROBE", f"127.0.0.1:{closed_port()}")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    started = time.monotonic()
    ran = run_cli("train", write_config(tmp_path / "n.yaml", images, {"preset": "resnet_18_imagenet"}),
                  "--output", tmp_path / "n")
    refused(ran, 4, "model.backbone.preset: resnet_18_imagenet: https://www.kaggle.com/models/keras/resnet",
            "preset: DIR")
    assert time.monotonic() - started < 30
    assert not (tmp_path / "kagglehub").exists()


# ---- KerasHub text presets: a text column through a tiny BERT -----------------------------------------

def tiny_bert_preset(path: Path) -> Path:
    import keras_hub

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "great", "bad", "awful", "movie",
                  *[f"w{i}" for i in range(20)]]
    keras_hub.models.BertBackbone(vocabulary_size=len(vocabulary), num_layers=1, num_heads=2, hidden_dim=16,
                                  intermediate_dim=32, max_sequence_length=32).save_to_preset(str(path))
    keras_hub.models.BertTokenizer(vocabulary=vocabulary).save_to_preset(str(path))
    return path


@pytest.mark.slow
def test_text_preset_trains_on_a_text_column_and_predicts_raw_strings(tmp_path):
    preset = tiny_bert_preset(tmp_path / "bert")
    rows = ["review,stars,label"] + [f"{'great' if i % 2 else 'awful'} movie w{i % 20},{i},{'pos' if i % 2 else 'neg'}"
                                     for i in range(24)]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")
    config = {"data": {"train": str(tmp_path / "reviews.csv"), "label": "label", "validation": 0.25,
                       "features": [{"name": "review", "type": "text"}]},
              "model": {"backbone": {"preset": str(preset), "sequence_length": 16},
                        "layers": [{"type": "Dense", "units": 2, "activation": "softmax"}]},
              "optimizer": {"type": "adam", "learning_rate": 0.001},
              "training": {"epochs": 1, "batch_size": 8},
              "finetune": {"freeze": ["backbone/token_embedding"]}}
    (tmp_path / "text.yaml").write_text(yaml.safe_dump(config))
    ran = run_cli("train", tmp_path / "text.yaml", "--output", tmp_path / "run")
    assert ran.exit_code == 0, ran
    row = json.loads((tmp_path / "run" / "run.json").read_text())["layers"][0]
    assert row["name"] == "backbone" and row["type"] == "BertBackbone", row
    assert row["frozen"] == 30 * 16 and row["trainable_params"] == row["params"] - 30 * 16, row  # the token embedding

    (tmp_path / "new.csv").write_text("review\ngood movie\nawful movie w3\n")
    ran = run_cli("predict", tmp_path / "run", tmp_path / "new.csv")
    assert ran.exit_code == 0, ran
    lines = ran.stdout.splitlines()
    assert lines[0] == "prediction,prob_neg,prob_pos" and len(lines) == 3, ran
    assert all(abs(float(a) + float(b) - 1) < 1e-5 for a, b in (line.split(",")[1:] for line in lines[1:]))

    # A text preset reads one text column: another feature beside it is exit 2 naming it.
    config["data"]["features"] = [{"name": "review", "type": "text"}, {"name": "stars", "type": "numeric"}]
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(config))
    refused(run_cli("validate", tmp_path / "two.yaml"), 2, "data.features.1", "'stars' (numeric) cannot go through "
            "a text preset")
