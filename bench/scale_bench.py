"""Model scale (issue 21, items 1 and 4): MLPs of about 1M and 10M parameters at batch 512, mlcli against
the tuned plain Keras script (bench/baseline_keras.py --tuned --hidden ...), each with jit_compile true
and false on both sides.

The same math on both sides: 64 generated features -> Dense relu layers -> 10-way softmax, Adam(1e-3),
categorical cross-entropy, batch 512, no validation, the data in memory (mlcli reads the CSV into
memory; the script loads it into NumPy arrays and fits on them). mlcli standardises inside the model
(a Normalization layer), the script in NumPy beforehand.

Reported per row: training samples/s over the epochs after the first (the first also traces the
graph), from the *periods* between consecutive epoch ends — everything a run does each epoch counts,
for mlcli its per-epoch writes too (history.csv, best.keras, the resume state), which history.csv's
`seconds` column leaves out (mlcli's epoch ends are the wall times of its TensorBoard events, written
last); the fraction of the matmul peak (training FLOPs = 6 x parameters x samples/s, as row 6); the
peak RSS of the whole process; each epoch's seconds, and the slowest later period against the first
epoch's own seconds (no later epoch should be slower than the first beyond noise).

    python bench/scale_bench.py [--rows 1m 10m] [--rounds 3] [--epochs 3] [--jit true false]
                                [--sides mlcli keras] [--train-rows N]

`--train-rows N` trains every row on N rows instead (a quick check on a busy machine; the table's
figures use the defaults).

`bench/run.py --only scale` runs it as part of `make bench`; alone it writes bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).absolute().parent))

import common
from backbone_bench import _event_ends, _periods
from common import REPO, WORK, interleaved, run

BASELINE = str(REPO / "bench" / "baseline_keras.py")
RESULTS = WORK / "scale.json"
BATCH = 512
LEARNING_RATE = 1e-3
# name -> (hidden widths, training rows). 64 -> 1024-1024 -> 10 is 1,126,410 parameters; 64 -> 3072-3072
# -> 10 is 9,670,666. The 10M row trains on fewer rows: at the ~100 GFLOP/s this machine's matmuls
# reach, one 160k-row epoch would take about 90 s, and a row runs 4 settings x 3 rounds x 3 epochs.
ROWS = {"1m": ((1024, 1024), 160_000), "10m": ((3072, 3072), 20_480)}
TEST_ROWS = 2_000
# A later epoch counts as slower than the first beyond noise when its period exceeds the first epoch's
# seconds by more than this (the machine is shared: single epochs move by several percent).
EPOCH_NOISE = 0.10


def parameters(hidden: tuple[int, ...], features: int = common.FEATURES, classes: int = common.CLASSES) -> int:
    widths = [features, *hidden, classes]
    return sum(a * b + b for a, b in zip(widths, widths[1:]))


def config_for(name: str, train: Path, test: Path, epochs: int, jit: str, rows: int) -> Path:
    return common.mlp_config(WORK / "configs" / f"scale-{name}-jit-{jit}.yaml", writer="bench/scale_bench.py",
                             name=f"scale-{name}", train=train, test=test, epochs=epochs, batch_size=BATCH,
                             hidden=ROWS[name][0], learning_rate=LEARNING_RATE, extra_training=f"  jit_compile: {jit}\n")


def _summary(epoch_seconds: list[float], ends: list[float], rows: int, peak_rss: int, process: float) -> dict:
    periods = _periods(ends)
    return {"samples_per_second": rows * len(periods) / sum(periods), "epoch_seconds": epoch_seconds,
            "epoch_periods": periods, "slowest_later_over_first": max(periods) / epoch_seconds[0],
            "peak_rss_mb": peak_rss / 2**20, "process_seconds": process}


def mlcli_job(name: str, train: Path, test: Path, epochs: int, jit: str, rows: int, precision: str = "float32"):
    config = config_for(name, train, test, epochs, jit, rows)

    def job(index: int) -> dict:
        out = WORK / "runs" / f"scale-{name}-jit-{jit}-{index}"
        done = run([*common.mlcli_command(), "train", str(config), "--output", str(out), "--force", "--json",
                    "--quiet", "--seed", str(42 + index), "--set", f"runtime.precision={precision}"], memory=True)
        document = json.loads(done["stdout"])
        with open(out / "history.csv") as handle:
            header = handle.readline().strip().split(",")
            seconds = [float(line.split(",")[header.index("seconds")]) for line in handle if line.strip()]
        result = _summary(seconds, _event_ends(out / "logs" / "train"), rows, done["peak_rss"], done["seconds"])
        result.update(test_accuracy=document["metrics"]["test_accuracy"],
                      jit_compile=document["distribute"]["jit_compile"],
                      steps_per_execution=document["distribute"]["steps_per_execution"])
        return result
    return job


def keras_job(name: str, train: Path, test: Path, epochs: int, jit: str, rows: int, precision: str = "float32"):
    hidden = ROWS[name][0]

    def job(index: int) -> dict:
        done = run([sys.executable, BASELINE, "--tuned", "--jit-compile", jit, "--train", str(train),
                    "--test", str(test), "--validation", "0", "--epochs", str(epochs), "--batch-size", str(BATCH),
                    "--hidden", *map(str, hidden), "--learning-rate", str(LEARNING_RATE), "--seed", str(42 + index),
                    "--precision", precision],
                   memory=True)
        document = common.last_json(done["stdout"])
        assert document["trainable_parameters"] == parameters(hidden), document["trainable_parameters"]
        result = _summary(document["epoch_seconds"], document["epoch_ends"], rows, done["peak_rss"], done["seconds"])
        result.update(test_accuracy=document["test_accuracy"], jit_compile=document["jit_compile"],
                      steps_per_execution=document["steps_per_execution"])
        return result
    return job


def measure(rows=tuple(ROWS), rounds: int = 3, epochs: int = 3, jits=("true", "false"),
            sides=("mlcli", "keras"), peak: dict | None = None, log=print, train_rows: int | None = None,
            precision: str = "float32", partial=None) -> dict:
    """The rows' runs and medians; `precision` (runtime.precision, Keras's policy in the script) is for
    bench/gpu_check.py's mixed-precision rows."""
    test = common.dataset(TEST_ROWS, seed=4)
    result: dict = {"settings": {"batch_size": BATCH, "epochs": epochs, "rounds": rounds, "learning_rate": LEARNING_RATE,
                                 "noise": EPOCH_NOISE, "precision": precision},
                    "rows": {}}
    if peak is None:
        peak = common.last_json(run([sys.executable, str(REPO / "bench" / "matmul_peak.py")])["stdout"])
    result["matmul_peak"] = peak
    for name in rows:
        hidden, count = ROWS[name][0], train_rows or ROWS[name][1]
        train = common.dataset(count, seed=3)
        log(f"scale: {name} ({parameters(hidden):,} parameters, {count:,} rows), load average {os.getloadavg()[0]:.1f}")
        jobs = {}
        for jit in jits:
            for side in sides:
                make = mlcli_job if side == "mlcli" else keras_job
                jobs[f"{side}_jit_{jit}"] = make(name, train, test, epochs, jit, count, precision)
        runs = interleaved(rounds, jobs)
        entry: dict = {"hidden": list(hidden), "train_rows": count, "parameters": parameters(hidden), "runs": runs,
                       "load_average_at_end": list(os.getloadavg())}
        for job, values in runs.items():
            rate = statistics.median(v["samples_per_second"] for v in values)
            entry[job] = {"samples_per_second": rate,
                          "peak_rss_mb": statistics.median(v["peak_rss_mb"] for v in values),
                          "slowest_later_over_first": statistics.median(v["slowest_later_over_first"] for v in values),
                          "epoch_seconds": [statistics.median(s) for s in zip(*(v["epoch_seconds"] for v in values))],
                          "epoch_periods": [statistics.median(s) for s in zip(*(v["epoch_periods"] for v in values))],
                          "fraction_of_peak": 6 * parameters(hidden) * rate / peak["peak_flops"]}
        for jit in jits:
            if f"mlcli_jit_{jit}" in entry and f"keras_jit_{jit}" in entry:
                entry[f"speedup_jit_{jit}"] = (entry[f"mlcli_jit_{jit}"]["samples_per_second"]
                                               / entry[f"keras_jit_{jit}"]["samples_per_second"])
        result["rows"][name] = entry
        if partial is not None:  # each row as it finishes: a long run stopped midway keeps what it measured
            partial(result)
    result["load_average_at_end"] = list(os.getloadavg())
    return result


def _write(result: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--jit", nargs="+", choices=["true", "false", "auto"], default=["true", "false"])
    parser.add_argument("--sides", nargs="+", choices=["mlcli", "keras"], default=["mlcli", "keras"])
    parser.add_argument("--train-rows", type=int, help="train every row on this many rows (quick checks)")
    args = parser.parse_args()
    started = time.perf_counter()
    result = measure(args.rows, args.rounds, args.epochs, args.jit, args.sides,
                     log=lambda m: print(m, file=sys.stderr, flush=True), train_rows=args.train_rows,
                     partial=_write)
    result["seconds"] = time.perf_counter() - started
    _write(result)
    peak = result["matmul_peak"]["peak_flops"]
    for name, entry in result["rows"].items():
        for job in [k for k in entry if k.startswith(("mlcli_", "keras_"))]:
            e = entry[job]
            print(f"{name} {job}: {e['samples_per_second']:,.0f} samples/s = {100 * e['fraction_of_peak']:.1f}% of "
                  f"{peak / 1e9:.0f} GFLOP/s; epochs {[round(s, 2) for s in e['epoch_seconds']]} periods "
                  f"{[round(s, 2) for s in e['epoch_periods']]}; peak RSS {e['peak_rss_mb']:.0f} MB")
        for key in [k for k in entry if k.startswith("speedup_")]:
            print(f"{name} {key}: {entry[key]:.2f}x")
    print(f"load average at end {result['load_average_at_end']}")


if __name__ == "__main__":
    main()
