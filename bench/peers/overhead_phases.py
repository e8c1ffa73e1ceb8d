"""Where `mlcli train configs/digits.yaml` spends its time, phase by phase, in one fresh process.

Wraps (timing only) the functions each phase runs, at the names the training code calls them by,
runs the real command in-process through the CLI app, and prints one JSON line: wall seconds and
process CPU seconds per phase. `--compare A B` runs this script in fresh processes with PYTHONPATH A
and B alternately (A B, B A, ...) and prints the medians side by side: the before/after table of
docs/performance.md ("Start-up and overhead").

    python bench/peers/overhead_phases.py [--config configs/digits.yaml]
    python bench/peers/overhead_phases.py --compare /tmp/before-tree . [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

T0_WALL, T0_CPU = time.perf_counter(), time.process_time()
PHASES: dict[str, list[float]] = {}


def _add(name: str, wall: float, cpu: float) -> None:
    entry = PHASES.setdefault(name, [0.0, 0.0])
    entry[0] += wall
    entry[1] += cpu


def timed(module, attribute: str, name: str) -> None:
    """Replace module.attribute by a wrapper adding its time to phase `name` (outermost call only)."""
    original = getattr(module, attribute)
    depth = [0]

    def wrapper(*args, **kwargs):
        if depth[0]:
            return original(*args, **kwargs)
        depth[0] += 1
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            depth[0] -= 1
            _add(name, time.perf_counter() - wall, time.process_time() - cpu)

    setattr(module, attribute, wrapper)


def profile(config: str) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    wall, cpu = time.perf_counter(), time.process_time()
    from mlcli.cli import app

    _add("CLI import (typer, mlcli.cli)", time.perf_counter() - wall, time.process_time() - cpu)
    from mlcli import runtime
    from mlcli.cli import train as cli_train
    from mlcli.training import finish as finish_module
    from mlcli.training import fit as fit_module
    from mlcli.training import session
    from mlcli.training import train as train_module

    original_import = runtime.import_tensorflow

    def import_tensorflow():
        if "tensorflow" in sys.modules:
            return original_import()
        wall, cpu = time.perf_counter(), time.process_time()
        tf = original_import()
        _add("import tensorflow", time.perf_counter() - wall, time.process_time() - cpu)
        wall, cpu = time.perf_counter(), time.process_time()
        import keras  # noqa: F401  (the training code imports it next; in Keras 3.15 `import tensorflow` has)

        _add("import keras", time.perf_counter() - wall, time.process_time() - cpu)
        from mlcli.training import callbacks  # imports keras: only once TensorFlow is in, as the run does

        timed(callbacks.EpochSummaries, "on_train_begin", "  fit: TensorBoard logs (writers, scalars, flush)")
        timed(callbacks.EpochSummaries, "on_epoch_end", "  fit: TensorBoard logs (writers, scalars, flush)")
        timed(callbacks.StateKeeper, "on_epoch_end", "  fit: history.csv, best.keras, resume state (epoch ends)")
        return tf

    runtime.import_tensorflow = import_tensorflow
    timed(session, "plan_run", "config: read, validate, plan the run directory")
    timed(cli_train, "render_training", "summary on stderr")
    timed(train_module, "prepare_data", "data: read the CSVs, split, normalization statistics")
    timed(train_module, "build_model", "model: build (Normalization adapted, layers)")
    timed(train_module, "fit", "fit (model.fit with mlcli's callbacks)")
    timed(train_module, "finish", "finish: model.keras, test evaluation, plots, metrics.json, run.json")
    timed(finish_module, "save_model", "  finish: save model.keras")
    start_plots = finish_module.start_run_plots

    def start_run_plots(*args, **kwargs):
        thread = start_plots(*args, **kwargs)
        join = thread.join

        def timed_join(*a, **k):
            wall, cpu = time.perf_counter(), time.process_time()
            join(*a, **k)
            _add("  finish: waiting for the plots thread", time.perf_counter() - wall, time.process_time() - cpu)

        thread.join = timed_join
        return thread

    finish_module.start_run_plots = start_run_plots
    timed(finish_module, "evaluation_dataset", "  finish: tf.data test pipeline")
    timed(fit_module, "training_dataset", "  fit: tf.data training pipeline")
    timed(fit_module, "evaluation_dataset", "  fit: tf.data validation pipeline")

    output = tempfile.mkdtemp(prefix="mlcli-phases-")
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        app(["train", config, "--force", "--output", output, "--quiet"], prog_name="mlcli", standalone_mode=False)
    finally:
        command_wall, command_cpu = time.perf_counter() - wall, time.process_time() - cpu
    with open(os.path.join(output, "history.csv")) as handle:
        header = handle.readline().strip().split(",")
        epochs = [float(line.split(",")[header.index("seconds")]) for line in handle if line.strip()]
    result = {name: {"wall": w, "cpu": c} for name, (w, c) in PHASES.items()}
    later = statistics.median(epochs[1:])
    result["  fit: first epoch beyond a later one (tracing)"] = {"wall": epochs[0] - later, "cpu": None}
    result["  fit: epochs (history.csv seconds)"] = {"wall": sum(epochs), "cpu": None}
    top = [name for name in PHASES if not name.startswith("  ")]
    accounted_wall = sum(PHASES[n][0] for n in top if n != "CLI import (typer, mlcli.cli)")
    accounted_cpu = sum(PHASES[n][1] for n in top if n != "CLI import (typer, mlcli.cli)")
    result["the rest of the command (device, compile, manifest, callbacks...)"] = {
        "wall": command_wall - accounted_wall, "cpu": command_cpu - accounted_cpu}
    result["in-process total"] = {"wall": time.perf_counter() - T0_WALL, "cpu": time.process_time() - T0_CPU}
    return result


def compare(trees: list[str], rounds: int, config: str) -> None:
    runs: dict[str, list[dict]] = {tree: [] for tree in trees}
    for index in range(rounds):
        for tree in trees if index % 2 == 0 else reversed(trees):
            env = {**os.environ, "PYTHONPATH": os.path.abspath(tree), "TF_CPP_MIN_LOG_LEVEL": "3"}
            started = time.perf_counter()
            done = subprocess.run([sys.executable, os.path.abspath(__file__), "--config", config], env=env,
                                  capture_output=True, text=True, check=True)
            document = json.loads(done.stdout.strip().splitlines()[-1])
            document["whole process"] = {"wall": time.perf_counter() - started, "cpu": None}
            runs[tree].append(document)
            print(f"{tree}: {document['whole process']['wall']:.2f} s, load {os.getloadavg()[0]:.1f}",
                  file=sys.stderr)
    names = list(dict.fromkeys(name for tree in trees for run in runs[tree] for name in run))
    print("| phase | " + " | ".join(f"{tree} wall (cpu)" for tree in trees) + " |")
    print("|---|" + "---|" * len(trees))
    for name in names:
        cells = []
        for tree in trees:
            walls = [r[name]["wall"] for r in runs[tree] if name in r]
            cpus = [r[name]["cpu"] for r in runs[tree] if name in r and r[name]["cpu"] is not None]
            cells.append(f"{statistics.median(walls):.3f}" + (f" ({statistics.median(cpus):.3f})" if cpus else "")
                         if walls else "—")
        print(f"| {name.strip()} | " + " | ".join(cells) + " |")
    print(json.dumps({"rounds": rounds, "load_average": os.getloadavg(), "runs": runs}), file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/digits.yaml")
    parser.add_argument("--compare", nargs="+", metavar="TREE")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.compare:
        compare(args.compare, args.rounds, args.config)
        return
    print(json.dumps(profile(args.config)))
    sys.stdout.flush()
    os._exit(0)  # as mlcli's main does: skip TensorFlow's native teardown


if __name__ == "__main__":
    main()
