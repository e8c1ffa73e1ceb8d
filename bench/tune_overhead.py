"""Sweeps: mlcli tune's overhead per trial, and mlcli tune against KerasTuner's RandomSearch.

1. Overhead per trial: a trial's wall time in the sweep (from the sweep's --json `seconds`) minus the
   training time its run records (the epochs' `seconds` in its history.csv): what a trial costs beyond
   its own epochs — building the trial's config, the model, the run directory's files (config, run.json,
   resume state, best.keras, model.keras, plots), the test-free final metrics, the study's bookkeeping.
2. Side by side, on the same space (learning rate log-uniform 1e-4..1e-1, units of the hidden layer
   16/32/64), the same number of trials and epochs and the same data (digits, 20% stratified
   validation): `mlcli tune` (random sampler, no pruner, like RandomSearch) as one process, against
   bench/tune_keras_tuner.py as one process. Wall time of the whole process (both import TensorFlow)
   and the best val_accuracy (by its best epoch, as KerasTuner scores a trial). Medians over seeds.

    python bench/tune_overhead.py [--seeds 3] [--trials 5] [--epochs 2]   # prints JSON
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).absolute().parent))
sys.path.insert(1, str(Path(__file__).absolute().parent.parent))  # mlcli, when not installed

import common  # noqa: E402
from common import REPO, WORK, median, run  # noqa: E402

SWEEP = """\
name: bench-sweep
seed: {seed}
data:
  train: builtin:digits/train
  validation: 0.2
model:
  layers:
    - {{type: Dense, units: 32, activation: relu}}
    - {{type: Dense, units: 10, activation: softmax}}
training:
  epochs: {epochs}
  batch_size: 32
tune:
  metric: val_accuracy
  trials: {trials}
  sampler: random
  pruner: none
  space:
    optimizer.learning_rate: {{loguniform: [1.0e-4, 1.0e-1]}}
    model.layers.0.units: {{choice: [16, 32, 64]}}
"""


def best_epoch_value(run_dir: Path, metric: str) -> float | None:
    with open(run_dir / "history.csv", newline="") as handle:
        values = [float(row[metric]) for row in csv.DictReader(handle) if row.get(metric)]
    return max(values) if values else None


def mlcli_sweep(seed: int, trials: int, epochs: int) -> dict:
    folder = WORK / "tune" / f"mlcli-{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    config = folder / "sweep.yaml"
    config.write_text(SWEEP.format(seed=seed, trials=trials, epochs=epochs))
    done = run([*common.mlcli_command(), "tune", str(config), "--output", str(folder / "sweep"), "--json"])
    document = json.loads(done["stdout"])
    overheads = [t["seconds"] - t["train_seconds"] for t in document["trials"]]
    return {
        "seconds": done["seconds"],
        "best_value": max(best_epoch_value(Path(t["run_dir"]), "val_accuracy") for t in document["trials"]),
        "best_value_last_epoch": document["best"]["value"],
        "trial_seconds": [t["seconds"] for t in document["trials"]],
        "train_seconds": [t["train_seconds"] for t in document["trials"]],
        "overhead_seconds": overheads,
        "trials": len(document["trials"]),
    }


def keras_tuner_search(seed: int, trials: int, epochs: int) -> dict:
    folder = WORK / "tune" / f"keras-tuner-{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    done = run([sys.executable, str(REPO / "bench" / "tune_keras_tuner.py"), "--trials", str(trials),
                "--epochs", str(epochs), "--seed", str(seed), "--dir", str(folder)])
    result = common.last_json(done["stdout"])
    return {"seconds": done["seconds"], "best_value": result["best_value"], "trials": result["trials"]}


def bench_tune(seeds: int = 3, trials: int = 5, epochs: int = 2) -> dict:
    """Both sides once per seed, interleaved (mlcli first on odd seeds, KerasTuner first on even ones)."""
    runs: dict[str, list] = {"mlcli": [], "keras_tuner": []}
    for index in range(seeds):
        seed = index + 1
        order = ["mlcli", "keras_tuner"] if index % 2 == 0 else ["keras_tuner", "mlcli"]
        for side in order:
            started = time.perf_counter()
            result = (mlcli_sweep if side == "mlcli" else keras_tuner_search)(seed, trials, epochs)
            runs[side].append(result)
            print(f"[tune] seed {seed} {side}: {result['seconds']:.1f}s best {result['best_value']:.4f} "
                  f"({time.perf_counter() - started:.0f}s)", file=sys.stderr, flush=True)
    overhead = [o for r in runs["mlcli"] for o in r["overhead_seconds"]]
    train = [s for r in runs["mlcli"] for s in r["train_seconds"]]
    medians = {side: {"seconds": median([r["seconds"] for r in results]),
                      "best_value": median([r["best_value"] for r in results])} for side, results in runs.items()}
    return {
        "space": "learning_rate loguniform [1e-4, 1e-1], units choice [16, 32, 64]",
        "seeds": seeds, "trials": trials, "epochs": epochs, "runs": runs,
        "median_overhead_seconds_per_trial": median(overhead),
        "median_train_seconds_per_trial": median(train),
        "median": medians,
        "wall_ratio_mlcli_to_keras_tuner": medians["mlcli"]["seconds"] / medians["keras_tuner"]["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(bench_tune(args.seeds, args.trials, args.epochs), indent=2))


if __name__ == "__main__":
    main()
