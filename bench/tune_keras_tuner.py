"""The KerasTuner side of bench/tune_overhead.py: RandomSearch over the same space, trials, epochs and
data as the mlcli sweep it is compared with. Prints one JSON line: {"seconds", "best_value", "trials"}.

Same data (the bundled digits train CSV, standardised inside the model by a Normalization layer adapted
on the training rows, a stratified 20% held out for validation with the same seed), same network
(Dense(units) relu, Dense(10) softmax), Adam with the sampled learning rate, batch size 32, objective
val_accuracy. KerasTuner scores a trial by its best epoch; bench/tune_overhead.py reads mlcli's trials
the same way (the best epoch of history.csv) for the side-by-side.

    python bench/tune_keras_tuner.py --trials 5 --epochs 2 --seed 1 --dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(Path(__file__).absolute().parent))

from baseline_keras import DATASETS, fast_exit, read_csv  # noqa: E402

UNITS = [16, 32, 64]
LEARNING_RATE = (1e-4, 1e-1)


def stratified(labels, fraction: float, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    held = []
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        held.append(rng.permutation(rows)[: min(int(round(fraction * len(rows))), len(rows) - 1)])
    mask = np.zeros(len(labels), dtype=bool)
    mask[np.concatenate(held)] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()

    import keras
    import keras_tuner

    x, y = read_csv(DATASETS / "digits_train.csv.gz", "label")
    keep, held = stratified(y, 0.2, args.seed)
    x_train, y_train, x_val, y_val = x[keep], y[keep], x[held], y[held]

    def build(hp):
        normalize = keras.layers.Normalization()
        normalize.adapt(x_train)
        model = keras.Sequential([
            keras.Input(shape=(x.shape[1],)), normalize,
            keras.layers.Dense(hp.Choice("units", UNITS), activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ])
        model.compile(optimizer=keras.optimizers.Adam(hp.Float("learning_rate", *LEARNING_RATE, sampling="log")),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    keras.utils.set_random_seed(args.seed)
    tuner = keras_tuner.RandomSearch(build, objective="val_accuracy", max_trials=args.trials, seed=args.seed,
                                     directory=str(args.dir), project_name="bench", overwrite=True)
    tuner.search(x_train, y_train, validation_data=(x_val, y_val), epochs=args.epochs, batch_size=32, verbose=0)
    best = tuner.oracle.get_best_trials(1)[0]
    trials = len(tuner.oracle.trials)
    print(json.dumps({"seconds": time.perf_counter() - STARTED, "best_value": float(best.score),
                      "trials": trials, "best_params": best.hyperparameters.values}), flush=True)
    fast_exit(0)


if __name__ == "__main__":
    main()
