"""The plain Keras script mlcli is measured against: the seed network on NumPy arrays.

Same network (64-64-10 relu/relu/softmax), optimizer (Adam 0.01), loss, batch size (32), epochs (10)
and data (the bundled digits train/test CSVs, standardised with the training statistics, 20% held
out for validation); `model.fit` on NumPy arrays, nothing else, Keras's own shuffling. Prints one
JSON line.

Two settings: Keras's defaults (one step per call, the interpreter's normal exit), and `--tuned`,
the best idiomatic plain Keras: the measured best steps_per_execution for the batch size, jit_compile
left to Keras (see TUNED_STEPS_PER_EXECUTION), and the same exit as mlcli's (`fast_exit`).

    python bench/baseline_keras.py [--epochs 10] [--batch-size 32] [--validation 0.2]
                                   [--train CSV --test CSV --label label] [--tuned]
                                   [--steps-per-execution N] [--jit-compile auto|true|false] [--fast-exit]
                                   [--hidden 64 64] [--learning-rate 0.01]

`--hidden` gives the hidden layers' widths (the model-scale rows of bench/scale_bench.py: 1024 1024,
3072 3072); `--jit-compile` given with `--tuned` overrides the tuned choice (the scale rows measure
both).

The throughput benchmark runs it on the generated 200,000-row set with `--validation 0`. The only
addition to a plain script is a callback that reads the clock at each epoch's start and end
(`epoch_seconds`); it does not touch the training. mlcli's history.csv `seconds` span the same: its
StateKeeper reads the clock at its epoch start and first thing at its epoch end, before it writes the
history row, best.keras or the resume state (and the TensorBoard and progress callbacks come after it).
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
# The tuned baseline's steps_per_execution by batch size: the best of those measured for the
# throughput benchmark (200,000 x 64, samples/s of epoch 2, medians of 2-3 interleaved runs on the
# 2-core machine, a busy one, so only large differences count):
#   batch 32:  1 -> 9k/s, 32 -> 39k, 128 -> 47-51k, 256 -> 39k, 512 -> 39k
#   batch 256: 1 -> 49k/s, 16 -> 161k, 32 -> 121k, 64 -> 204-235k, 128 -> 170k
# Other batch sizes run about 4,096 rows per call, as mlcli does.
TUNED_STEPS_PER_EXECUTION = {32: 128, 256: 64}
# jit_compile stays "auto": Keras compiles with XLA where there is a GPU. On this CPU, True was no
# faster at batch 32 (52k/s against 51k at 128 steps per call) and 4x slower at batch 256 (52k/s).
TUNED_JIT_COMPILE = "auto"


def tuned_settings(batch_size: int) -> tuple[int, str]:
    """(steps_per_execution, jit_compile) of the tuned baseline for this batch size."""
    return TUNED_STEPS_PER_EXECUTION.get(batch_size, max(1, 4096 // batch_size)), TUNED_JIT_COMPILE


def read_csv(path: Path, label: str) -> tuple[np.ndarray, np.ndarray]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        header = [name.strip('"') for name in handle.readline().strip().split(",")]
        data = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    column = header.index(label)
    return np.delete(data, column, axis=1), data[:, column].astype(np.int64)


def fast_exit(code: int = 0) -> None:
    """Leave as mlcli's `main` does: atexit handlers, flushed streams, then os._exit, skipping the
    second or so TensorFlow's native teardown takes at interpreter shutdown."""
    import atexit
    import sys

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--validation", type=float, default=0.2, help="validation_split (0: none)")
    parser.add_argument("--train", type=Path, default=DATASETS / "digits_train.csv.gz")
    parser.add_argument("--test", type=Path, default=DATASETS / "digits_test.csv.gz")
    parser.add_argument("--label", default="label")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--steps-per-execution", type=int, default=1, help="model.compile's (default 1)")
    parser.add_argument("--jit-compile", choices=["auto", "true", "false"], default=None,
                        help="model.compile's (default auto: XLA only where a GPU is present)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64], help="hidden Dense widths (relu)")
    parser.add_argument("--learning-rate", type=float, default=0.01, help="Adam's")
    parser.add_argument("--precision", default="float32",
                        help="Keras's global dtype policy: float32 | mixed_float16 | mixed_bfloat16 (bench/gpu_check.py)")
    parser.add_argument("--fast-exit", action="store_true", help="end with os._exit, as mlcli does")
    parser.add_argument("--tuned", action="store_true",
                        help="the tuned baseline: TUNED_STEPS_PER_EXECUTION for the batch size, jit_compile auto, --fast-exit")
    args = parser.parse_args()
    if args.tuned:
        args.steps_per_execution, tuned_jit = tuned_settings(args.batch_size)
        args.jit_compile = args.jit_compile or tuned_jit
        args.fast_exit = True
    args.jit_compile = args.jit_compile or "auto"

    import keras

    keras.utils.set_random_seed(args.seed)
    keras.mixed_precision.set_global_policy(args.precision)  # mixed: the last layer stays float32, below
    x_train, y_train = read_csv(args.train, args.label)
    x_test, y_test = read_csv(args.test, args.label)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    classes = int(y_train.max()) + 1
    model = keras.Sequential([
        keras.Input((x_train.shape[1],)),
        *[keras.layers.Dense(width, activation="relu") for width in args.hidden],
        keras.layers.Dense(classes, activation="softmax", dtype="float32"),
    ])
    model.compile(keras.optimizers.Adam(args.learning_rate), "categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=args.steps_per_execution,
                  jit_compile={"auto": "auto", "true": True, "false": False}[args.jit_compile])

    epoch_seconds: list[float] = []
    epoch_ends: list[float] = []  # perf_counter at each epoch's end: periods between them (bench/scale_bench.py)

    class Clock(keras.callbacks.Callback):  # measurement only
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_ends.append(time.perf_counter())
            epoch_seconds.append(epoch_ends[-1] - self.started)

    fit_started = time.perf_counter()
    history = model.fit(x_train, keras.utils.to_categorical(y_train, classes), batch_size=args.batch_size,
                        epochs=args.epochs, validation_split=args.validation, verbose=0, callbacks=[Clock()])
    fit_seconds = time.perf_counter() - fit_started
    _, accuracy = model.evaluate(x_test, keras.utils.to_categorical(y_test, classes), verbose=0)
    train_rows = len(x_train) - int(len(x_train) * args.validation)  # what validation_split leaves
    print(json.dumps({"test_accuracy": float(accuracy), "accuracy": float(history.history["accuracy"][-1]),
                      "train_rows": train_rows, "epoch_seconds": epoch_seconds, "epoch_ends": epoch_ends, "fit_seconds": fit_seconds,
                      "trainable_parameters": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
                      "steps_per_execution": args.steps_per_execution, "jit_compile": args.jit_compile,
                      "seconds": time.perf_counter() - STARTED}))
    if args.fast_exit:
        fast_exit()


if __name__ == "__main__":
    main()
