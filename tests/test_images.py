"""Image data through the real CLI (docs/contract.md §7): class folders and path tables, data.image and
data.augment, a from-scratch CNN, predict/evaluate/export on images, and every bad-input error."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from mlcli.datasets.make_shapes import CLASSES, draw, write_png

SIZE = 8


def _bmp(path: Path, pixels: np.ndarray) -> None:
    """A 24-bit BMP (bottom-up rows, BGR, rows padded to 4 bytes)."""
    height, width, _ = pixels.shape
    pad = (4 - width * 3 % 4) % 4
    rows = b"".join(pixels[row, :, ::-1].tobytes() + b"\0" * pad for row in range(height - 1, -1, -1))
    header = struct.pack("<2sIHHI", b"BM", 54 + len(rows), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(rows), 2835, 2835, 0, 0)
    path.write_bytes(header + info + rows)


def make_folder(root: Path, per_class: int = 6, seed: int = 0, odd_files: bool = False) -> Path:
    """root/<class>/NN.png for the three shapes; with odd_files, one grayscale PNG, one RGBA PNG, one BMP
    (mixed channel counts and formats) and a README.txt that is not an image."""
    rng = np.random.default_rng(seed)
    for shape in CLASSES:
        folder = root / shape
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            write_png(folder / f"{index:02d}.png", draw(shape, rng, SIZE))
    if odd_files:
        circle = draw("circle", rng, SIZE)
        write_png(root / "circle" / "gray.png", circle.mean(axis=2).astype(np.uint8))
        write_png(root / "square" / "rgba.png", np.concatenate([draw("square", rng, SIZE),
                                                                 np.full((SIZE, SIZE, 1), 255, np.uint8)], 2))
        _bmp(root / "triangle" / "bitmap.bmp", draw("triangle", rng, SIZE))
        (root / "triangle" / "README.txt").write_text("not an image")
    return root


def config_text(train: Path, extra: str = "", *, test: Path | None = None, augment: str = "",
                layers: str | None = None, epochs: int = 2) -> str:
    layers = layers or """
    - {type: Conv2D, filters: 4, kernel_size: 3, activation: relu}
    - {type: GlobalAveragePooling2D}
    - {type: Dense, units: 3, activation: softmax}"""
    return f"""
seed: 7
data:
  train: {train}
  {f'test: {test}' if test else ''}
  validation: 0.25
  image: {{size: [{SIZE}, {SIZE}], channels: 3}}
  {augment}
  {extra}
model:
  layers:{layers}
optimizer: {{type: adam, learning_rate: 0.01}}
training: {{epochs: {epochs}, batch_size: 4}}
"""


def _clean_error(ran, code: int, *texts: str) -> None:
    assert ran.exit_code == code, ran
    assert "Traceback" not in ran.stderr and ran.exception is None, ran
    for text in texts:
        assert text in ran.stderr, ran


# ---- config checks (no data read) ------------------------------------------------------------------

def test_validate_accepts_a_conv2d_image_config_and_refuses_bad_layers_and_augmentations(tmp_path):
    train = make_folder(tmp_path / "images", per_class=2)
    good = tmp_path / "good.yaml"
    good.write_text(config_text(train, augment="augment: [{type: RandomFlip, mode: horizontal}]"))
    ran = run_cli("validate", good)
    assert ran.exit_code == 0, ran

    bad = tmp_path / "bad.yaml"
    bad.write_text(config_text(train, augment="augment: [{type: RandomFlipp}, {type: RandomRotation, factr: 0.1}]",
                               layers="\n    - {type: Conv2D, filtrs: 4, kernel_size: 3}\n    - {type: Flatten}"
                                      "\n    - {type: Dense, units: 3, activation: softmax}"))
    ran = run_cli("validate", bad)
    _clean_error(ran, 2, "data.augment.0.type", "did you mean 'RandomFlip'", "data.augment.1.factr",
                 "model.layers.0.filtrs", "filters")

    no_images = tmp_path / "tables.yaml"
    no_images.write_text("data: {train: builtin:digits/train, augment: [{type: RandomFlip}]}\n")
    _clean_error(run_cli("validate", no_images), 2, "data.augment", "augmentation layers are for image data")


# ---- bad input: exit 3 naming the file, nothing written ----------------------------------------------

def _train_fails(tmp_path: Path, train: Path, *texts: str, code: int = 3) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(config_text(train))
    out = tmp_path / "run"
    ran = run_cli("train", config, "--output", out)
    _clean_error(ran, code, *texts)
    assert not out.exists(), "a run directory was written for data that cannot be trained on"


def test_a_file_that_is_not_an_image_is_exit_3_naming_it(tmp_path):
    train = make_folder(tmp_path / "images", per_class=2)
    bad = train / "square" / "broken.png"
    bad.write_bytes(b"this is not a png at all")
    _train_fails(tmp_path, train, str(bad), "not a readable PNG, JPEG, BMP or GIF image")


def test_a_corrupt_image_body_is_exit_3_naming_it(tmp_path):
    train = make_folder(tmp_path / "images", per_class=2)
    good = (train / "circle" / "00.png").read_bytes()
    bad = train / "circle" / "cut.png"
    bad.write_bytes(good[:40])  # the header says 8x8; the pixel data is cut off
    _train_fails(tmp_path, train, str(bad), "cannot be decoded as an image")


def test_an_image_bomb_is_refused_from_its_header(tmp_path):
    train = make_folder(tmp_path / "images", per_class=2)
    bomb = train / "circle" / "bomb.png"
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + header) & 0xFFFFFFFF)
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + header + crc)
    _train_fails(tmp_path, train, str(bomb), "30000 x 30000 = 900,000,000 pixels", "MLCLI_MAX_IMAGE_PIXELS")


def test_one_class_an_empty_class_and_no_class_folders_are_exit_3(tmp_path):
    one = tmp_path / "one"
    write_png((one / "cat").mkdir(parents=True) or one / "cat" / "a.png", np.zeros((4, 4, 3), np.uint8))
    _train_fails(tmp_path, one, "single class ('cat')", "at least two")

    empty = make_folder(tmp_path / "empty", per_class=2)
    (empty / "dog").mkdir()
    _train_fails(tmp_path, empty, "the class folder 'dog' holds no images")

    flat = tmp_path / "flat"
    flat.mkdir()
    write_png(flat / "a.png", np.zeros((4, 4, 3), np.uint8))
    _train_fails(tmp_path, flat, "has no subfolders", "one subfolder per class")


def test_validate_deep_reads_a_table_of_image_paths_and_labels(tmp_path):
    make_folder(tmp_path / "images", per_class=3)
    rows = [f"images/{shape}/{index:02d}.png,{number}" for number, shape in enumerate(CLASSES) for index in range(3)]
    table = tmp_path / "images.csv"
    table.write_text("file,kind\n" + "\n".join(rows) + "\n")
    config = tmp_path / "table.yaml"
    config.write_text(config_text(table, "label: kind").replace("channels: 3}", "channels: 3, path_column: file}"))
    ran = run_cli("validate", config, "--deep")
    assert ran.exit_code == 0, ran
    assert "3 classes" in ran.stderr and f"input shape ({SIZE}, {SIZE}, 3)" in ran.stderr, ran


def test_a_path_table_naming_a_missing_image_is_exit_3_naming_the_row(tmp_path):
    make_folder(tmp_path / "images", per_class=2)
    table = tmp_path / "images.csv"
    table.write_text("path,label\nimages/circle/00.png,circle\nimages/square/missing.png,square\n")
    _train_fails(tmp_path, table, "row 2", "missing.png", "file not found")


# ---- training, predict, evaluate, export ------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory) -> dict:
    """A tiny CNN trained on 8x8 class folders (with a grayscale, an RGBA, a BMP image and a README among them)."""
    root = tmp_path_factory.mktemp("shapes")
    train = make_folder(root / "train", per_class=6, seed=1, odd_files=True)
    test = make_folder(root / "test", per_class=2, seed=2)
    config = root / "cnn.yaml"
    config.write_text(config_text(train, test=test, augment="augment: [{type: RandomFlip, mode: horizontal}]"))
    run = root / "run"
    ran = run_cli("train", config, "--output", run)
    assert ran.exit_code == 0, ran
    return {"root": root, "train": train, "test": test, "run": run, "stderr": ran.stderr, "config": config}


@pytest.mark.slow
def test_train_on_class_folders_records_the_images_and_converts_every_format(shapes_run):
    run = shapes_run["run"]
    assert json.loads((run / "labels.json").read_text()) == ["circle", "square", "triangle"]
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["inputs"] == {"kind": "image", "size": [SIZE, SIZE], "channels": 3,
                                  "crop_to_aspect_ratio": False, "path_column": "path"}
    assert manifest["rows"] == {"train": 15, "validation": 6, "test": 6}  # 21 images: 7 per class, 2 held out each
    assert "left out 1 file(s) that are not images" in shapes_run["stderr"]
    assert (run / "plots" / "misclassified.png").stat().st_size > 1000
    import keras

    model = keras.saving.load_model(run / "model.keras")
    assert tuple(model.input_shape) == (None, SIZE, SIZE, 3)
    # data.augment is not inside the model: a plain call (no training=False) is deterministic
    assert not any(type(layer).__name__.startswith("Random") for layer in model.layers)


@pytest.mark.slow
def test_predict_on_a_folder_a_table_and_one_file_agrees_with_plain_keras(shapes_run, tmp_path):
    run, test = shapes_run["run"], shapes_run["test"]
    ran = run_cli("predict", run, test)
    assert ran.exit_code == 0, ran
    lines = ran.stdout.strip().splitlines()
    assert lines[0] == "path,prediction,prob_circle,prob_square,prob_triangle"
    paths = [line.split(",")[0] for line in lines[1:]]
    assert paths == sorted(str(p) for p in test.rglob("*.png"))  # recursive, in sorted order
    probabilities = np.array([[float(v) for v in line.split(",")[2:]] for line in lines[1:]])

    import keras
    import tensorflow as tf

    model = keras.saving.load_model(run / "model.keras")
    images = np.stack([tf.image.resize(tf.io.decode_png(Path(p).read_bytes(), channels=3), (SIZE, SIZE)).numpy()
                       for p in paths]).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model(images)), probabilities, atol=1e-5)

    table = test.parent / "list.csv"  # paths relative to the table's folder
    table.write_text("path\n" + "\n".join(str(Path(p).relative_to(test.parent)) for p in paths[:3]) + "\n")
    out = tmp_path / "out.csv"
    ran = run_cli("predict", run, table, "--output", out)
    assert ran.exit_code == 0, ran
    assert out.read_text().splitlines() == lines[:4]

    _clean_error(run_cli("predict", run, test, "--keep", "id"), 2, "--keep id", "path")

    broken = tmp_path / "broken"
    broken.mkdir()
    write_png(broken / "a.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    (broken / "b.png").write_bytes((broken / "a.png").read_bytes()[:40])  # a valid header, the data cut off
    failed = run_cli("predict", run, broken, "--output", tmp_path / "broken.csv")
    _clean_error(failed, 3, str(broken / "b.png"), "cannot be decoded")
    assert not (tmp_path / "broken.csv").exists() and not list(tmp_path.glob(".broken.csv*"))

    one = run_cli("predict", run, paths[-1], "--no-probabilities")
    assert one.exit_code == 0, one
    assert one.stdout.strip().splitlines() == ["path,prediction", ",".join(lines[-1].split(",")[:2])]


@pytest.mark.slow
def test_evaluate_an_image_folder_with_confusion_matrix_and_misclassified_plot(shapes_run, tmp_path):
    plot = tmp_path / "confusion.png"
    ran = run_cli("evaluate", shapes_run["run"], "--json", "--plot", plot)
    assert ran.exit_code == 0, ran
    document = json.loads(ran.stdout)
    assert document["samples"] == 6 and document["source"] == "data.test"
    trained = json.loads((shapes_run["run"] / "metrics.json").read_text())
    assert abs(document["metrics"]["accuracy"] - trained["test_accuracy"]) < 1e-6  # the same images, decoded alike
    assert np.array(document["confusion_matrix"]).sum() == 6
    assert plot.stat().st_size > 1000 and (tmp_path / "confusion-misclassified.png").stat().st_size > 1000

    corrupt = tmp_path / "eval"
    make_folder(corrupt, per_class=1)
    (corrupt / "circle" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    _clean_error(run_cli("evaluate", shapes_run["run"], "--data", corrupt), 3, str(corrupt / "circle" / "x.png"))


@pytest.mark.slow
def test_export_tflite_on_images_passes_the_parity_check(shapes_run, tmp_path):
    out = tmp_path / "model.tflite"
    ran = run_cli("export", shapes_run["run"], "--format", "tflite", "--output", out, "--json")
    assert ran.exit_code == 0, ran
    parity = json.loads(ran.stdout)["parity"]
    assert parity["max_abs_diff"] <= 1e-5 and "images of data.test" in parity["rows_from"]
    signature = json.loads((tmp_path / "signature.json").read_text())
    assert signature["input"]["shape"] == [None, SIZE, SIZE, 3] and "[0, 255]" in signature["input"]["preprocessing"]


def _history(run: Path) -> list[list[str]]:
    rows = [line.split(",") for line in (run / "history.csv").read_text().splitlines()]
    return [[v for k, v in zip(rows[0], row) if k != "seconds"] for row in rows[1:]]


@pytest.mark.slow
def test_file_reading_resume_and_augmentation_keep_the_run_exact(tmp_path):
    """data.stream: true reads the files at every epoch (mlcli.data.image_split) in the same order, with
    the same pixels, as the in-memory cache, and a run of it stopped after epoch 1 and resumed ends as
    an uninterrupted in-memory run; data.augment changes the training batches (the history differs)."""
    train = make_folder(tmp_path / "images", per_class=4, seed=3)

    def train_run(name: str, extra: str = "", augment: str = "", *args) -> Path:
        config = tmp_path / f"{name}.yaml"
        config.write_text(config_text(train, extra, augment=augment) + "runtime: {deterministic: true}\n")
        ran = run_cli("train", config, "--output", tmp_path / name, "--quiet", *args)
        assert ran.exit_code == 0, ran
        return tmp_path / name

    memory = _history(train_run("memory", "stream: false"))
    stopped = train_run("files", "stream: true", "", "--set", "training.epochs=1")
    ran = run_cli("train", "--resume", stopped, "--set", "training.epochs=2", "--quiet")
    assert ran.exit_code == 0, ran
    assert _history(stopped) == memory

    augmented = _history(train_run("augmented", "stream: false", "augment: [{type: RandomFlip, mode: horizontal}]"))
    assert augmented[0] != memory[0]
