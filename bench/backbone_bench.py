"""Images per second training a MobileNetV3Small at 96x96 (issue 17 item 8): with the backbone frozen
and with the whole network trainable, mlcli against a plain Keras script that reads the same folder
with keras.utils.image_dataset_from_directory — the same math on both sides: the same images, model
(MobileNetV3Small, include_top false, average pooling, its own preprocessing; then a 3-way softmax),
Adam(1e-3), categorical cross-entropy, batch size, epochs, no validation split, random initial
weights (weights: null — nothing is downloaded). The Keras side caches the decoded images and
prefetches, as the tf.data guide advises (mlcli caches them in memory too), and runs as many steps
per TensorFlow call as mlcli's steps_per_execution: auto does.

    python bench/backbone_bench.py [--images 900] [--epochs 5] [--batch-size 32] [--rounds 1]
    python bench/backbone_bench.py --keras DIR --trainable frozen|full ...   # one plain Keras run (used by the above)

A figure is train images / the median epoch period over all of a side's rounds (pooled): a period is
the seconds from one epoch's end to the next's,
so that everything a run does per epoch counts — for mlcli also what it writes after each epoch
(history.csv, the resume state, TensorBoard logs), which history.csv's `seconds` column leaves out;
mlcli's periods are read from the wall times of its TensorBoard events, written after the resume
state. The first epoch (tracing, caching) has no period and is left out.
Writes bench/results/backbone.json. `bench/run.py --only backbone` runs it as part of `make bench`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common  # bench/common.py: whole-process time and peak RSS (GNU time or psutil)

REPO = Path(__file__).absolute().parent.parent
RESULTS = REPO / "bench" / "results" / "backbone.json"
SIZE = 96
CLASSES = ("circle", "square", "triangle")

CONFIG = """\
# written by bench/backbone_bench.py
name: bench-backbone-{trainable}
seed: {seed}
data:
  train: {train}
  validation: null
  image: {{size: [{size}, {size}], channels: 3}}
model:
  backbone: {{type: MobileNetV3Small, weights: null, pooling: avg}}
  layers:
    - {{type: Dense, units: {classes}, activation: softmax}}
optimizer: {{type: adam, learning_rate: 0.001}}
loss: categorical_crossentropy
metrics: [accuracy]
training: {{epochs: {epochs}, batch_size: {batch}}}
finetune: {{freeze: {freeze}}}
runtime: {{precision: {precision}}}
"""


def make_images(root: Path, count: int, seed: int = 0) -> Path:
    """`count` PNGs, SIZE x SIZE, of the three shapes on noisy backgrounds (seeded, generated)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for index in range(count):
        label = CLASSES[index % len(CLASSES)]
        (root / label).mkdir(parents=True, exist_ok=True)
        background = rng.integers(0, 80, (SIZE, SIZE, 3), dtype=np.uint8)
        image = Image.fromarray(background)
        draw = ImageDraw.Draw(image)
        c, r = rng.integers(30, 66, 2), int(rng.integers(12, 28))
        box = [int(c[0] - r), int(c[1] - r), int(c[0] + r), int(c[1] + r)]
        colour = tuple(int(v) for v in rng.integers(120, 256, 3))
        if label == "circle":
            draw.ellipse(box, fill=colour)
        elif label == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])], fill=colour)
        image.save(root / label / f"{index:04d}.png")
    return root


def per_epoch(runs: list[dict]) -> list[float]:
    """Each epoch's seconds (its history row / the callback's clock), the median over the rounds."""
    return [statistics.median(run["epoch_seconds"][i] for run in runs) for i in range(len(runs[0]["epoch_seconds"]))]


def _rate(periods: list[float], images: int) -> float:
    return images / statistics.median(periods)


def _periods(ends: list[float]) -> list[float]:
    """Seconds between consecutive epoch ends: every epoch but the first, with all its per-epoch work."""
    if len(ends) < 2:
        raise SystemExit("the bench needs at least 2 epochs (--epochs) to time one epoch after the first")
    return [later - earlier for earlier, later in zip(ends, ends[1:])]


def _event_ends(log_dir: Path) -> list[float]:
    """Wall time of each epoch's TensorBoard scalars (mlcli writes them after history.csv and the resume state)."""
    import tensorflow as tf  # deferred: the bench's parent process needs TensorFlow only to read the events

    ends: dict[int, float] = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            if any(value.tag == "epoch_loss" for value in event.summary.value):
                ends[int(event.step)] = max(ends.get(int(event.step), 0.0), event.wall_time)
    return [ends[step] for step in sorted(ends)]


def run_mlcli(work: Path, train: Path, images: int, trainable: str, args) -> dict:
    config = work / f"mlcli-{trainable}.yaml"
    config.write_text(CONFIG.format(trainable=trainable, seed=args.seed, train=train, size=SIZE, classes=len(CLASSES),
                                    epochs=args.epochs, batch=args.batch_size, precision=args.precision,
                                    freeze="[backbone]" if trainable == "frozen" else "[]"))
    out = work / f"run-{trainable}"
    done = common.run([sys.executable, "-m", "mlcli", "train", str(config), "--output", str(out), "--force", "--json",
                       "--quiet"], memory=True)
    with open(out / "history.csv", newline="") as handle:
        seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
    periods = _periods(_event_ends(out / "logs" / "train"))
    return {"epoch_seconds": seconds, "epoch_periods": periods, "images_per_second": _rate(periods, images),
            "wall_seconds": done["seconds"], "peak_rss_mb": done["peak_rss"] / 2**20,
            "metrics": json.loads(done["stdout"])["metrics"]}


def run_keras(work: Path, train: Path, images: int, trainable: str, args) -> dict:
    done = common.run([sys.executable, str(Path(__file__).absolute()), "--keras", str(train), "--trainable", trainable, "--epochs",
                       str(args.epochs), "--batch-size", str(args.batch_size), "--seed", str(args.seed),
                       "--precision", args.precision], memory=True)
    result = json.loads(done["stdout"].strip().splitlines()[-1])
    periods = _periods(result.pop("epoch_ends"))
    return {**result, "epoch_periods": periods, "images_per_second": _rate(periods, images),
            "wall_seconds": done["seconds"], "peak_rss_mb": done["peak_rss"] / 2**20}


def keras_script(args) -> None:
    """The plain Keras side: what a Keras user would write for the same training."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    if args.precision != "float32":
        keras.mixed_precision.set_global_policy(args.precision)
    data = keras.utils.image_dataset_from_directory(
        args.keras, label_mode="categorical", image_size=(SIZE, SIZE), batch_size=args.batch_size, seed=args.seed)
    data = data.cache().prefetch(tf.data.AUTOTUNE)
    backbone = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3),
                                                   pooling="avg", include_preprocessing=True)
    backbone.trainable = args.trainable == "full"
    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", dtype="float32")(backbone(inputs))
    model = keras.Model(inputs, outputs)
    # Tuned as mlcli's steps_per_execution: auto is: about 4,096 images per TensorFlow call, at most an epoch.
    steps = int(data.cardinality())
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=max(1, min(4096 // args.batch_size, steps)))

    class Timer(keras.callbacks.Callback):
        seconds: list = []
        ends: list = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            Timer.ends.append(time.perf_counter())
            Timer.seconds.append(Timer.ends[-1] - self.start)

    history = model.fit(data, epochs=args.epochs, verbose=0, callbacks=[Timer()])
    print(json.dumps({"epoch_seconds": Timer.seconds, "epoch_ends": Timer.ends,
                      "metrics": {k: float(v[-1]) for k, v in history.history.items()}}))


def measure(images: int = 900, epochs: int = 5, batch_size: int = 32, rounds: int = 1, seed: int = 42,
            precision: str = "float32", only: tuple[str, ...] = ("frozen", "full")) -> dict:
    args = argparse.Namespace(epochs=epochs, batch_size=batch_size, seed=seed, precision=precision)
    results: dict = {"settings": {"images": images, "size": SIZE, "epochs": epochs, "batch_size": batch_size,
                                  "rounds": rounds, "precision": precision, "weights": None}, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="mlcli-bench-backbone-") as temp:
        work = Path(temp)
        train = make_images(work / "images", images)
        for trainable in only:
            runs: dict[str, list] = {"mlcli": [], "keras": []}
            for round_ in range(rounds):  # interleaved, the order reversed every other round
                order = ("mlcli", "keras") if round_ % 2 == 0 else ("keras", "mlcli")
                for side in order:
                    run = run_mlcli if side == "mlcli" else run_keras
                    runs[side].append(run(work, train, images, trainable, args))
            # Every later epoch of a side's rounds pooled: on this machine a whole epoch now and then runs
            # at half speed, both processors idle half its time (docs/performance.md, "Whole epochs at half
            # speed"), and the median of one run's few periods moves with how many such epochs it met.
            rates = {side: _rate([p for r in rs for p in r["epoch_periods"]], images) for side, rs in runs.items()}
            results["runs"][trainable] = {
                "runs": runs, "images_per_second": rates, "mlcli_over_keras": rates["mlcli"] / rates["keras"],
                "peak_rss_mb": {side: statistics.median(r["peak_rss_mb"] for r in rs) for side, rs in runs.items()},
                "epoch_seconds": {side: per_epoch(rs) for side, rs in runs.items()},
                "process_seconds": {side: statistics.median(r["wall_seconds"] for r in rs) for side, rs in runs.items()},
            }
    results["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["load_average_at_end"] = list(os.getloadavg())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=900)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--precision", default="float32", help="float32 | mixed_float16 | mixed_bfloat16")
    parser.add_argument("--only", nargs="+", choices=["frozen", "full"], default=["frozen", "full"],
                        help="which of the two trainings to run (default: both)")
    parser.add_argument("--keras", help=argparse.SUPPRESS)
    parser.add_argument("--trainable", choices=["frozen", "full"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.keras:
        keras_script(args)
        return
    results = measure(args.images, args.epochs, args.batch_size, args.rounds, args.seed, args.precision, tuple(args.only))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    for trainable, entry in results["runs"].items():
        rates = entry["images_per_second"]
        process = entry["process_seconds"]
        print(f"MobileNetV3Small {SIZE}x{SIZE}, backbone {trainable}: mlcli {rates['mlcli']:.1f} images/s, "
              f"plain Keras {rates['keras']:.1f} images/s, mlcli/Keras {entry['mlcli_over_keras']:.2f}x; "
              f"whole process {process['mlcli']:.2f} s vs {process['keras']:.2f} s")


if __name__ == "__main__":
    main()
