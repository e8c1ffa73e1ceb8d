"""The plain Keras script mlcli is measured against: the seed network on the bundled digits data.

Same network (64-64-10 relu/relu/softmax), optimizer (Adam 0.01), loss, batch size (32), epochs (10)
and data (the bundled train/test CSVs, standardised with the training statistics, 20% held out for
validation); `model.fit` on NumPy arrays, nothing else. Prints one JSON line.

    python bench/baseline_keras.py [--epochs 10] [--batch-size 32] [--train CSV --test CSV --label label]
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

import numpy as np  # noqa: E402

DATASETS = Path(__file__).resolve().parent.parent / "mlcli" / "datasets"


def read_csv(path: Path, label: str) -> tuple[np.ndarray, np.ndarray]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        header = handle.readline().strip().split(",")
        data = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    column = header.index(label)
    return np.delete(data, column, axis=1), data[:, column].astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
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
    fit_started = time.perf_counter()
    model.fit(x_train, keras.utils.to_categorical(y_train, classes), batch_size=args.batch_size,
              epochs=args.epochs, validation_split=0.2, verbose=0)
    fit_seconds = time.perf_counter() - fit_started
    _, accuracy = model.evaluate(x_test, keras.utils.to_categorical(y_test, classes), verbose=0)
    print(json.dumps({"test_accuracy": float(accuracy), "fit_seconds": fit_seconds,
                      "seconds": time.perf_counter() - STARTED}))


if __name__ == "__main__":
    main()
