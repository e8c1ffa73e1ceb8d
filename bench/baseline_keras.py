"""The plain Keras script mlcli is measured against: the seed network on NumPy arrays.

Same network (64-64-10 relu/relu/softmax), optimizer (Adam 0.01), loss, batch size (32), epochs (10)
and data (the bundled digits train/test CSVs, standardised with the training statistics, 20% held
out for validation); `model.fit` on NumPy arrays, nothing else: default compile settings (one step
per call), Keras's own shuffling. Prints one JSON line.

    python bench/baseline_keras.py [--epochs 10] [--batch-size 32] [--validation 0.2]
                                   [--train CSV --test CSV --label label]

The throughput benchmark runs it on the generated 200,000-row set with `--validation 0`. The only
addition to a plain script is a callback that reads the clock at each epoch's start and end
(`epoch_seconds`, measured like mlcli's history.csv `seconds`); it does not touch the training.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path

STARTED = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

DATASETS = Path(__file__).resolve().parent.parent / "mlcli" / "datasets"


def read_csv(path: Path, label: str) -> tuple[np.ndarray, np.ndarray]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        header = [name.strip('"') for name in handle.readline().strip().split(",")]
        data = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    column = header.index(label)
    return np.delete(data, column, axis=1), data[:, column].astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--validation", type=float, default=0.2, help="validation_split (0: none)")
    parser.add_argument("--train", type=Path, default=DATASETS / "digits_train.csv.gz")
    parser.add_argument("--test", type=Path, default=DATASETS / "digits_test.csv.gz")
    parser.add_argument("--label", default="label")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    import keras

    keras.utils.set_random_seed(args.seed)
    x_train, y_train = read_csv(args.train, args.label)
    x_test, y_test = read_csv(args.test, args.label)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    classes = int(y_train.max()) + 1
    model = keras.Sequential([
        keras.Input((x_train.shape[1],)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(classes, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy", metrics=["accuracy"])

    epoch_seconds: list[float] = []

    class Clock(keras.callbacks.Callback):  # measurement only
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.perf_counter() - self.started)

    fit_started = time.perf_counter()
    history = model.fit(x_train, keras.utils.to_categorical(y_train, classes), batch_size=args.batch_size,
                        epochs=args.epochs, validation_split=args.validation, verbose=0, callbacks=[Clock()])
    fit_seconds = time.perf_counter() - fit_started
    _, accuracy = model.evaluate(x_test, keras.utils.to_categorical(y_test, classes), verbose=0)
    train_rows = len(x_train) - int(len(x_train) * args.validation)  # what validation_split leaves
    print(json.dumps({"test_accuracy": float(accuracy), "accuracy": float(history.history["accuracy"][-1]),
                      "train_rows": train_rows, "epoch_seconds": epoch_seconds, "fit_seconds": fit_seconds,
                      "trainable_parameters": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
                      "seconds": time.perf_counter() - STARTED}))


if __name__ == "__main__":
    main()
