"""mlcli serve for an image model (docs/contract.md §9): images sent as base64 bytes get exactly what
`mlcli predict FOLDER` writes for the same files (decoded alike: PNG, JPEG, BMP; channels, resize), in the three
request shapes; concurrent image requests share model calls; a bad image (bad base64, not an image,
cut short, an image bomb's header) is 400 naming it and the server goes on; metadata says what to send."""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np
import pytest
from conftest import run_cli
from evalpredict_runs import read_output
from test_images import _bmp, config_text, make_folder
from test_serve import assert_same, call, make_app, metric

from mlcli.datasets.make_shapes import draw, write_png

pytestmark = pytest.mark.slow
URL = "/v1/models/cnn:predict"  # the run is named for its config file


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A tiny CNN trained on 8x8 shapes, and a folder to predict holding other sizes and formats."""
    root = tmp_path_factory.mktemp("serveimg")
    train = make_folder(root / "train", per_class=3, seed=1)
    config = root / "cnn.yaml"
    config.write_text(config_text(train, epochs=1))
    run = root / "run"
    ran = run_cli("train", config, "--output", run)
    assert ran.exit_code == 0, ran
    rng = np.random.default_rng(5)
    folder = root / "predict"
    folder.mkdir()
    for i, shape in enumerate(["circle", "square", "triangle", "circle", "square", "triangle"]):
        write_png(folder / f"{i:02d}.png", draw(shape, rng, 8))
    write_png(folder / "10_gray.png", draw("circle", rng, 8).mean(axis=2).astype(np.uint8))  # 1 channel -> 3
    write_png(folder / "11_big.png", draw("square", rng, 16))  # 16x16 -> resized to 8x8
    _bmp(folder / "12_bitmap.bmp", draw("triangle", rng, 8))
    import tensorflow as tf

    (folder / "13_photo.jpg").write_bytes(tf.io.encode_jpeg(draw("circle", rng, 12)).numpy())  # JPEG, 12x12
    out = root / "predicted.csv"
    ran = run_cli("predict", run, folder, "--output", out)
    assert ran.exit_code == 0, ran
    written = read_output(out).to_pylist()
    files = sorted(p for p in folder.iterdir())
    assert [row["path"] for row in written] == [str(p) for p in files]
    images = [base64.b64encode(p.read_bytes()).decode() for p in files]
    return {"run": run, "written": [{k: v for k, v in row.items() if k != "path"} for row in written],
            "images": images, "app": make_app(run)}


def test_images_get_what_predict_writes_in_every_shape_and_metadata_says_images(image_run):
    images, written = image_run["images"], image_run["written"]
    bodies = [{"instances": [{"b64": image} for image in images]},
              {"instances": [{"image": {"b64": image}} for image in images]},
              {"inputs": {"image": [{"b64": image} for image in images]}}]
    answers = call(image_run["app"], [("POST", URL, body) for body in bodies]
                   + [("GET", "/v1/models/cnn/metadata", None)])
    for answer in answers[:3]:
        assert answer.status_code == 200, answer.text
        assert list(answer.json()["predictions"][0]) == ["prediction", "prob_circle", "prob_square", "prob_triangle"]
        assert_same(answer.json()["predictions"], written)
    inputs = answers[3].json()["metadata"]["inputs"]
    assert inputs == {"kind": "image", "column": "image", "encoding": "b64", "size": [8, 8], "channels": 3,
                      "crop_to_aspect_ratio": False}


def _png_header(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + header
            + struct.pack(">I", zlib.crc32(b"IHDR" + header) & 0xFFFFFFFF))


def test_bad_images_are_400_naming_them_and_image_requests_share_model_calls(image_run, tmp_path):
    images, written = image_run["images"], image_run["written"]
    good = images[0]
    cut = base64.b64encode(base64.b64decode(good)[:60]).decode()  # a valid header, the data cut off
    bomb = base64.b64encode(_png_header(30000, 30000)).decode()
    text = base64.b64encode(b"hello, not an image at all").decode()
    bad = [({"instances": [{"b64": good}, {"b64": cut}]}, "instances: instance 2: cannot be decoded as an image"),
           ({"instances": [{"b64": "not base64!"}]}, '"b64" is not base64 text'),
           ({"inputs": {"image": [{"b64": good}, {"b64": text}]}},
            "inputs: column 'image', value 2: not a readable PNG, JPEG, BMP or GIF image"),
           ({"instances": [{"b64": good}, {"b64": good}, {"b64": bomb}]},
            "instances: instance 3: declares 30000 x 30000 = 900,000,000 pixels"),
           ({"instances": [{"pixel": 1.0}]}, "this model takes images"),
           ({"instances": [{"image": "abc"}]}, "instances: instance 1: 'abc' is not an image's bytes"),
           ({"instances": [{"image": None}]}, "instances: instance 1: missing")]
    app = make_app(image_run["run"], max_batch=64, batch_timeout_ms=300)
    singles = [("POST", URL, {"instances": [{"b64": image}]}) for image in images]
    answers = call(app, singles[:4] + [("POST", URL, body) for body, _ in bad] + singles[4:])
    refused = answers[4:4 + len(bad)]
    for answer, (_, message) in zip(refused, bad):
        assert answer.status_code == 400 and message in answer.json()["error"], (message, answer.text)
    served = answers[:4] + answers[4 + len(bad):]
    for answer, want in zip(served, written):
        assert answer.status_code == 200, answer.text
        assert_same(answer.json()["predictions"], [want])
    (metrics,) = [a.text for a in call(app, [("GET", "/metrics", None)])]
    calls = metric(metrics, "mlcli_batch_size_count")
    assert calls <= len(images) / 3, f"{len(images)} concurrent image requests took {calls} model calls"
    after = call(app, [("POST", URL, {"instances": [{"b64": good}]})])[0]  # the server goes on
    assert after.status_code == 200
    assert_same(after.json()["predictions"], written[:1])
