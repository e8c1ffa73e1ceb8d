"""`make bench`: mlcli against a plain Keras script (bench/baseline_keras.py) and pandas, on this machine.

The Keras script runs twice over: with Keras's defaults ("baseline"), and tuned ("tuned": the best
idiomatic plain Keras — steps_per_execution and jit_compile as measured best, and the same os._exit
as mlcli; see baseline_keras.TUNED_ROWS_PER_CALL). The table shows both; every target that compares
with plain Keras is judged against the tuned one.

Every figure is the median of several runs, and every comparison is a ratio of two medians measured
in this same invocation, the sides interleaved run by run (A B C, C B A, A B C, ...) so that a noisy,
shared machine slows them alike. Writes bench/results.json (every run's raw numbers), bench/results.md
(the table) and the table into README.md between its bench markers.

    python bench/run.py [--rounds 3] [--rounds-256 5] [--startup-rounds 7] [--seed-rounds 7]
                        [--loading-rounds 7] [--memory-rounds 3] [--only NAME ...] [--no-readme]

Benchmarks: startup, seed, throughput, loading, predict, utilisation (needs throughput), images, typed (real
public tables with typed features against HistGradientBoosting, and typed vs pre-encoded training time:
bench/typed_tables.py), stream_typed (peak RSS of a streamed epoch of a typed table, 200,000 vs
2,000,000 rows: bench/stream_memory.py --typed), tune (bench/tune_overhead.py: mlcli tune's overhead per trial, and mlcli tune against
KerasTuner's RandomSearch),
backbone (issue 17: MobileNetV3Small images/s, frozen and whole network, against image_dataset_from_directory;
bench/backbone_bench.py), serve
(bench/serve_load.py: mlcli serve against a naive FastAPI server, loopback only), scale (issue 21: MLPs of
about 1M and 10M parameters at batch 512 against the tuned Keras script, jit_compile true and false on
both sides, with the fraction of the matmul peak, peak RSS and per-epoch times: bench/scale_bench.py),
memory (peak RSS of the whole process, mlcli against the tuned plain Keras script: the seed job, and
160,000 x 64 rows at batch 256).
The generated data sets are cached in bench/results/data/ (gitignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).absolute().parent))
sys.path.insert(1, str(Path(__file__).absolute().parent.parent))  # mlcli, when not installed

import backbone_bench
import common
import report
import scale_bench
import stream_memory
import tune_overhead
import typed_tables
from common import REPO, WORK, interleaved, median, run

PYTHON = sys.executable
BASELINE = str(REPO / "bench" / "baseline_keras.py")
KERAS_SIDES = {"baseline": [], "tuned": ["--tuned"]}  # the plain Keras script's two settings
SEED_CONFIG = "configs/digits.yaml"
TRAIN_ROWS, TEST_ROWS = 200_000, 20_000
PREDICT_ROWS = (100_000, 1_000_000)
THROUGHPUT_EPOCHS = 3
BATCHES = (32, 256)
# Round i of a training benchmark runs both sides with seed SEED + i: an accuracy is then a median
# over seeds (one seed's digits test accuracy moves by a point or two with the initialisation and
# the order of the batches alone), and the times are unaffected.
SEED = 42


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- 1. start-up ---------------------------------------------------------------------------------

def bench_startup(rounds: int) -> dict:
    mlcli = common.mlcli_command()
    jobs = {
        "help": lambda _: run([*mlcli, "--help"])["seconds"],
        "validate": lambda _: run([*mlcli, "validate", SEED_CONFIG])["seconds"],
        "import_tensorflow": lambda _: run([PYTHON, "-c", "import tensorflow"])["seconds"],
    }
    runs = interleaved(rounds, jobs)
    medians = {name: median(values) for name, values in runs.items()}
    return {"runs": runs, "median_seconds": medians,
            "speedup_help": medians["import_tensorflow"] / medians["help"],
            "speedup_validate": medians["import_tensorflow"] / medians["validate"]}


# ---- 2. the seed job -----------------------------------------------------------------------------

def bench_seed(rounds: int) -> dict:
    mlcli = common.mlcli_command()

    def mlcli_job(index: int) -> dict:
        out = WORK / "runs" / f"seed-{index}"
        done = run([*mlcli, "train", SEED_CONFIG, "--output", str(out), "--force", "--json",
                    "--seed", str(SEED + index)])
        document = json.loads(done["stdout"])
        return {"seconds": done["seconds"], "test_accuracy": document["metrics"]["test_accuracy"]}

    def keras_job(flags: list[str]):
        def job(index: int) -> dict:
            done = run([PYTHON, BASELINE, *flags, "--seed", str(SEED + index)])
            document = common.last_json(done["stdout"])
            return {"seconds": done["seconds"], "test_accuracy": document["test_accuracy"]}
        return job

    runs = interleaved(rounds, {"mlcli": mlcli_job, **{side: keras_job(f) for side, f in KERAS_SIDES.items()}})
    result = {"runs": runs}
    for side in runs:
        result[side] = {key: median(r[key] for r in runs[side]) for key in ("seconds", "test_accuracy")}
    for side, suffix in (("baseline", ""), ("tuned", "_tuned")):
        result["time_ratio" + suffix] = result["mlcli"]["seconds"] / result[side]["seconds"]
        result["accuracy_points" + suffix] = 100 * (result["mlcli"]["test_accuracy"] - result[side]["test_accuracy"])
    return result


# ---- 6. images: a from-scratch CNN ---------------------------------------------------------------

IMAGE_BASELINE = str(REPO / "bench" / "images_keras.py")
IMAGES_PER_CLASS = {"train": 1000, "test": 200}  # 3,000 training images: epochs long enough to time
IMAGE_EPOCHS = 3


def image_folders() -> tuple[Path, Path]:
    """The bundled shapes generator (mlcli/datasets/make_shapes.py), more images of it: cached."""
    from mlcli.datasets.make_shapes import write_set

    root = common.DATA / f"shapes-{IMAGES_PER_CLASS['train']}-{IMAGES_PER_CLASS['test']}"
    if not (root / "done").is_file():
        shutil.rmtree(root, ignore_errors=True)
        write_set(root, IMAGES_PER_CLASS)
        (root / "done").write_text("")
    return root / "train", root / "test"


def bench_images(rounds: int) -> dict:
    """Training images/s of configs/shapes_cnn.yaml's CNN, mlcli against image_dataset_from_directory."""
    train, test = image_folders()
    mlcli = common.mlcli_command()
    sets = ["--set", f"data.train={train}", "--set", f"data.test={test}", "--set", "data.validation=null",
            "--set", "data.augment=[]", "--set", f"training.epochs={IMAGE_EPOCHS}"]
    rows = 3 * IMAGES_PER_CLASS["train"]

    def mlcli_job(index: int) -> dict:
        out = WORK / "runs" / f"images-{index}"
        done = run([*mlcli, "train", "configs/shapes_cnn.yaml", "--output", str(out), "--force", "--json", *sets,
                    "--seed", str(SEED + index)], memory=True)
        document = json.loads(done["stdout"])
        with open(out / "history.csv") as handle:
            header = handle.readline().strip().split(",")
            seconds = [float(line.split(",")[header.index("seconds")]) for line in handle if line.strip()]
        return {**_rates(seconds, rows), "test_accuracy": document["metrics"]["test_accuracy"],
                "process_seconds": done["seconds"], "peak_rss_mb": done["peak_rss"] / 2**20}

    def keras_job(index: int) -> dict:
        done = run([PYTHON, IMAGE_BASELINE, "--train", str(train), "--test", str(test), "--epochs", str(IMAGE_EPOCHS),
                    "--seed", str(SEED + index)], memory=True)
        document = common.last_json(done["stdout"])
        return {**_rates(document["epoch_seconds"], document["train_images"]),
                "test_accuracy": document["test_accuracy"], "process_seconds": done["seconds"],
                "peak_rss_mb": done["peak_rss"] / 2**20}

    runs = interleaved(rounds, {"mlcli": mlcli_job, "keras": keras_job})
    result: dict = {"runs": runs, "data": {"train_images": rows, "size": [32, 32], "epochs": IMAGE_EPOCHS}}
    for side in runs:
        result[side] = {key: median(r[key] for r in runs[side])
                        for key in ("samples_per_second", "samples_per_second_all_epochs", "test_accuracy",
                                    "process_seconds", "peak_rss_mb")}
        result[side]["epoch_seconds"] = [median(r["epoch_seconds"][i] for r in runs[side]) for i in range(IMAGE_EPOCHS)]
    result["speedup"] = result["mlcli"]["samples_per_second"] / result["keras"]["samples_per_second"]
    result["speedup_all_epochs"] = (result["mlcli"]["samples_per_second_all_epochs"]
                                    / result["keras"]["samples_per_second_all_epochs"])
    return result


# ---- 3. training throughput ----------------------------------------------------------------------

def throughput_config(train: Path, test: Path) -> Path:
    """The seed network on the generated set, without validation (the baseline does none either)."""
    return common.mlp_config(WORK / "configs" / "throughput.yaml", writer="bench/run.py", name="throughput",
                             train=train, test=test, epochs=THROUGHPUT_EPOCHS, batch_size=32)


def _rates(epoch_seconds: list[float], rows: int) -> dict:
    """Samples/s over the epochs after the first (the first also traces the graph: start-up), and
    over all epochs."""
    steady = epoch_seconds[1:] or epoch_seconds
    return {"samples_per_second": rows * len(steady) / sum(steady),
            "samples_per_second_all_epochs": rows * len(epoch_seconds) / sum(epoch_seconds),
            "epoch_seconds": epoch_seconds}


def bench_throughput(rounds: int, rounds_256: int) -> dict:
    train, test = common.dataset(TRAIN_ROWS, seed=1), common.dataset(TEST_ROWS, seed=2)
    config = throughput_config(train, test)
    mlcli = common.mlcli_command()
    result: dict = {"data": {"train": str(train.relative_to(REPO)), "test": str(test.relative_to(REPO)),
                             "rows": TRAIN_ROWS, "format": "csv", "epochs": THROUGHPUT_EPOCHS}}

    def mlcli_job(batch: int):
        def job(index: int) -> dict:
            out = WORK / "runs" / f"throughput-bs{batch}-{index}"
            done = run([*mlcli, "train", str(config), "--output", str(out), "--force", "--json",
                        "--set", f"training.batch_size={batch}", "--seed", str(SEED + index)])
            document = json.loads(done["stdout"])
            with open(out / "history.csv") as handle:
                header = handle.readline().strip().split(",")
                seconds = [float(line.split(",")[header.index("seconds")]) for line in handle if line.strip()]
            return {**_rates(seconds, TRAIN_ROWS), "test_accuracy": document["metrics"]["test_accuracy"],
                    "process_seconds": done["seconds"], "run_dir": str(out.relative_to(REPO))}
        return job

    def keras_job(batch: int, flags: list[str]):
        def job(index: int) -> dict:
            done = run([PYTHON, BASELINE, *flags, "--train", str(train), "--test", str(test), "--validation", "0",
                        "--epochs", str(THROUGHPUT_EPOCHS), "--batch-size", str(batch), "--seed", str(SEED + index)])
            document = common.last_json(done["stdout"])
            return {**_rates(document["epoch_seconds"], document["train_rows"]),
                    "test_accuracy": document["test_accuracy"], "process_seconds": done["seconds"],
                    "trainable_parameters": document["trainable_parameters"],
                    "steps_per_execution": document["steps_per_execution"], "jit_compile": document["jit_compile"]}
        return job

    for batch in BATCHES:
        log(f"throughput: batch {batch}")
        # Batch 256's epochs last about a second, so a burst of other work on the machine moves one
        # run a lot: more runs, as they are cheap.
        count = rounds_256 if batch == 256 else rounds
        runs = interleaved(count, {"mlcli": mlcli_job(batch),
                                   **{side: keras_job(batch, flags) for side, flags in KERAS_SIDES.items()}})
        entry: dict = {"runs": runs}
        for side in runs:
            entry[side] = {key: median(r[key] for r in runs[side])
                           for key in ("samples_per_second", "samples_per_second_all_epochs", "test_accuracy")}
        for side, suffix in (("baseline", ""), ("tuned", "_tuned")):
            entry["speedup" + suffix] = entry["mlcli"]["samples_per_second"] / entry[side]["samples_per_second"]
            entry["speedup_all_epochs" + suffix] = (entry["mlcli"]["samples_per_second_all_epochs"]
                                                    / entry[side]["samples_per_second_all_epochs"])
            entry["accuracy_points" + suffix] = 100 * (entry["mlcli"]["test_accuracy"] - entry[side]["test_accuracy"])
        entry["tuned_settings"] = {key: runs["tuned"][0][key] for key in ("steps_per_execution", "jit_compile")}
        result[f"batch_{batch}"] = entry
    result["checkpoint"] = result[f"batch_{BATCHES[-1]}"]["runs"]["mlcli"][-1]["run_dir"]
    return result


# ---- 11. memory -----------------------------------------------------------------------------------

MEMORY_ROWS, MEMORY_TEST_ROWS, MEMORY_BATCH, MEMORY_EPOCHS = 160_000, 20_000, 256, 3


def bench_memory(rounds: int) -> dict:
    """Peak RSS of the whole process (GNU time's maxrss), mlcli against the tuned plain Keras script on
    the same data in memory: the seed job, and 160,000 x 64 rows (64-64-10, batch 256, 3 epochs)."""
    train, test = common.dataset(MEMORY_ROWS, seed=1), common.dataset(MEMORY_TEST_ROWS, seed=2)
    config = throughput_config(train, test)
    mlcli = common.mlcli_command()
    jobs = {
        "seed": ([*mlcli, "train", SEED_CONFIG, "--force", "--json"], [PYTHON, BASELINE, "--tuned"]),
        "rows_160k": ([*mlcli, "train", str(config), "--force", "--json", "--set", f"training.batch_size={MEMORY_BATCH}",
                       "--set", f"training.epochs={MEMORY_EPOCHS}"],
                      [PYTHON, BASELINE, "--tuned", "--train", str(train), "--test", str(test), "--validation", "0",
                       "--epochs", str(MEMORY_EPOCHS), "--batch-size", str(MEMORY_BATCH)]),
    }
    result: dict = {"data": {"rows_160k": {"train": str(train.relative_to(REPO)), "rows": MEMORY_ROWS,
                                           "batch_size": MEMORY_BATCH, "epochs": MEMORY_EPOCHS}}}
    for name, (mlcli_command, keras_command) in jobs.items():
        log(f"memory: {name}")

        def measure(command: list[str], side: str, job_name: str = name):
            def job(index: int) -> float:
                extra = ["--output", str(WORK / "runs" / f"memory-{job_name}-{index}")] if side == "mlcli" else []
                return run([*command, *extra, "--seed", str(SEED + index)], memory=True)["peak_rss"] / 2**20
            return job

        runs = interleaved(rounds, {"mlcli": measure(mlcli_command, "mlcli"), "tuned": measure(keras_command, "tuned")})
        medians = {side: median(values) for side, values in runs.items()}
        result[name] = {"runs_mb": runs, "median_mb": medians, "ratio": medians["mlcli"] / medians["tuned"]}
    return result


# ---- 4. data loading -----------------------------------------------------------------------------

def bench_loading(rounds: int) -> dict:
    """In this process: the 200,000-row CSV to float32 features and class indices, both ways."""
    import numpy as np

    path = common.dataset(TRAIN_ROWS, seed=1)

    def mlcli_load(_: int) -> float:
        from mlcli.data.frames import load_frame
        from mlcli.data.labels import class_indices, sorted_vocabulary

        started = time.perf_counter()
        frame = load_frame(str(path), "data.train", labels=["label"], features=None)
        y = class_indices(frame.y, sorted_vocabulary(frame.y), "data.train", str(path))
        seconds = time.perf_counter() - started
        assert frame.x.shape == (TRAIN_ROWS, common.FEATURES) and frame.x.dtype == np.float32 and len(y) == TRAIN_ROWS
        return seconds

    def pandas_load(_: int) -> float:
        import pandas as pd

        started = time.perf_counter()
        frame = pd.read_csv(path)
        y = frame.pop("label").to_numpy()
        x = frame.to_numpy(dtype=np.float32)
        seconds = time.perf_counter() - started
        assert x.shape == (TRAIN_ROWS, common.FEATURES) and len(y) == TRAIN_ROWS
        return seconds

    def pyarrow_only(_: int) -> float:
        """pyarrow's multi-threaded CSV parse alone, no checks, no arrays: the floor of mlcli's reader."""
        import pyarrow.csv as pacsv

        started = time.perf_counter()
        pacsv.read_csv(path)
        return time.perf_counter() - started

    def pyarrow_one_thread(_: int) -> float:
        """The same parse on one core: its speed per core against pandas's (single-threaded) parser says
        what two cores can reach at best."""
        import pyarrow.csv as pacsv

        started = time.perf_counter()
        pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=False))
        return time.perf_counter() - started

    mlcli_load(0), pandas_load(0), pyarrow_only(0)  # imports and the page cache, before any timing
    runs = interleaved(rounds, {"mlcli": mlcli_load, "pandas": pandas_load, "pyarrow_parse_only": pyarrow_only,
                                "pyarrow_one_thread": pyarrow_one_thread})
    medians = {name: median(values) for name, values in runs.items()}
    return {"runs": runs, "median_seconds": medians, "speedup": medians["pandas"] / medians["mlcli"],
            "pyarrow_parse_speedup": medians["pandas"] / medians["pyarrow_parse_only"],
            "pyarrow_one_thread_speedup": medians["pandas"] / medians["pyarrow_one_thread"],
            "file_mb": round(path.stat().st_size / 2**20, 1)}


# ---- 5. prediction -------------------------------------------------------------------------------

def bench_predict(rounds: int, checkpoint: Path) -> dict:
    mlcli = common.mlcli_command()
    inputs = {rows: common.dataset(rows, seed=10 + i, labels=False) for i, rows in enumerate(PREDICT_ROWS)}
    output = WORK / "predictions.csv"

    def job(rows: int):
        def measure(index: int) -> dict:
            done = run([*mlcli, "predict", str(checkpoint), str(inputs[rows]), "--output", str(output)],
                       capture=False, memory=True)
            if index == 0:
                written = _count_lines(output) - 1
                if written != rows:
                    raise RuntimeError(f"predict wrote {written} rows for {rows} input rows")
            return {"seconds": done["seconds"], "peak_rss_mb": done["peak_rss"] / 2**20}
        return measure

    runs = interleaved(rounds, {str(rows): job(rows) for rows in PREDICT_ROWS})
    output.unlink(missing_ok=True)
    small, large = (str(r) for r in PREDICT_ROWS)
    entry: dict = {"runs": runs, "checkpoint": str(checkpoint.relative_to(REPO))}
    for rows in runs:
        seconds = median(r["seconds"] for r in runs[rows])
        entry[rows] = {"seconds": seconds, "peak_rss_mb": median(r["peak_rss_mb"] for r in runs[rows]),
                       "rows_per_second": int(rows) / seconds}
    # Start-up (Python, TensorFlow, the model) is the same for both sizes; the difference of the two
    # median times is what the extra 900,000 rows cost: the streaming rate.
    extra = entry[large]["seconds"] - entry[small]["seconds"]
    entry["rows_per_second_streaming"] = (int(large) - int(small)) / extra if extra > 0 else float("inf")
    entry["startup_seconds"] = entry[small]["seconds"] - int(small) / entry["rows_per_second_streaming"]
    entry["memory_growth"] = entry[large]["peak_rss_mb"] / entry[small]["peak_rss_mb"] - 1
    return entry


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


# ---- 6. utilisation ------------------------------------------------------------------------------

def bench_utilisation(throughput: dict, parameters: int) -> dict:
    peak = common.last_json(run([PYTHON, str(REPO / "bench" / "matmul_peak.py")])["stdout"])
    result: dict = {"matmul_peak": peak, "trainable_parameters": parameters}
    for batch in BATCHES:
        entry = throughput[f"batch_{batch}"]
        for side in ("mlcli", *KERAS_SIDES):
            flops = 6 * parameters * entry[side]["samples_per_second"]
            result[f"batch_{batch}_{side}"] = {"flops": flops, "fraction": flops / peak["peak_flops"]}
    return result


# ---- the whole run -------------------------------------------------------------------------------

def machine() -> dict:
    import numpy
    import pyarrow

    versions = {"python": platform.python_version(), "numpy": numpy.__version__, "pyarrow": pyarrow.__version__}
    for name in ("tensorflow", "keras", "pandas"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # noqa: BLE001
            versions[name] = None
    cpu = "unknown"
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                            check=False)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True, check=False)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": _memory_gb(), "platform": platform.platform(),
            "versions": versions, "commit": commit.stdout.strip() + ("+changes" if dirty.stdout.strip() else ""),
            "load_average_at_start": list(os.getloadavg())}


def _memory_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs per side: batch-32 throughput and predict")
    parser.add_argument("--rounds-256", type=int, default=5, help="runs per side: batch-256 throughput")
    parser.add_argument("--startup-rounds", type=int, default=7)
    parser.add_argument("--seed-rounds", type=int, default=7)
    parser.add_argument("--loading-rounds", type=int, default=7)
    parser.add_argument("--memory-rounds", type=int, default=3, help="runs per side: peak RSS")
    parser.add_argument("--only", nargs="+", choices=["startup", "seed", "throughput", "loading", "predict",
                                                      "utilisation", "images", "typed", "stream_typed", "tune", "backbone",
                                                      "serve", "scale", "memory"])
    parser.add_argument("--scale-rounds", type=int, default=3, help="runs per side and jit_compile setting: scale")
    parser.add_argument("--tune-seeds", type=int, default=3, help="seeds per side of the sweep comparison")
    parser.add_argument("--backbone-images", type=int, default=900, help="images for the MobileNetV3Small runs")
    parser.add_argument("--backbone-epochs", type=int, default=8,
                        help="epochs of each MobileNetV3Small run: 7 periods per run after the first epoch")
    parser.add_argument("--no-readme", action="store_true", help="do not write the table into README.md")
    args = parser.parse_args()
    if min(args.rounds, args.rounds_256, args.startup_rounds, args.seed_rounds, args.loading_rounds,
           args.tune_seeds, args.scale_rounds, args.memory_rounds) < 3:
        parser.error("every figure is a median of at least three runs: rounds must be >= 3")
    everything = {"startup", "seed", "throughput", "loading", "predict", "utilisation", "images", "typed", "stream_typed",
                  "tune", "backbone", "serve", "scale", "memory"}
    wanted = set(args.only or everything)

    started = time.perf_counter()
    results: dict = {"machine": machine(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    results["rounds"] = {"default": args.rounds, "batch_256": args.rounds_256, "startup": args.startup_rounds,
                         "seed": args.seed_rounds, "loading": args.loading_rounds,
                         "scale": args.scale_rounds, "memory": args.memory_rounds}
    if "startup" in wanted:
        log("start-up")
        results["startup"] = bench_startup(args.startup_rounds)
    if "seed" in wanted:
        log("seed job")
        results["seed"] = bench_seed(args.seed_rounds)
    if "memory" in wanted:
        results["memory"] = bench_memory(args.memory_rounds)
    if "loading" in wanted:
        log("data loading")
        results["loading"] = bench_loading(args.loading_rounds)
    if wanted & {"throughput", "predict", "utilisation"}:
        results["throughput"] = bench_throughput(args.rounds, args.rounds_256)
    if "utilisation" in wanted:
        log("matmul peak")
        parameters = results["throughput"]["batch_32"]["runs"]["baseline"][0]["trainable_parameters"]
        results["utilisation"] = bench_utilisation(results["throughput"], parameters)
    if "scale" in wanted:  # the matmul peak of this run, when row 6 measured it
        results["scale"] = scale_bench.measure(rounds=args.scale_rounds, log=log,
                                               peak=results.get("utilisation", {}).get("matmul_peak"))
    if "predict" in wanted:
        log("predict")
        results["predict"] = bench_predict(args.rounds, REPO / results["throughput"]["checkpoint"])
    if "images" in wanted:
        log("images")
        results["images"] = bench_images(args.rounds)
    if "tune" in wanted:
        log("tune")
        results["tune"] = tune_overhead.bench_tune(args.tune_seeds)
    if "typed" in wanted:
        log("typed tables")
        results["typed_tables"] = typed_tables.bench_typed_tables(args.rounds)
    if "stream_typed" in wanted:
        log("typed streaming: peak RSS")
        results["stream_typed"] = stream_memory.peak_memory(list(stream_memory.TYPED_ROWS), typed=True, echo=False)
    if "backbone" in wanted:
        log("MobileNetV3Small images/s")
        results["backbone"] = backbone_bench.measure(images=args.backbone_images, epochs=args.backbone_epochs,
                                                     rounds=args.rounds)
    if "serve" in wanted:
        log("serve")
        import serve_load

        results["serve"] = serve_load.run_all()
    results["seconds"] = time.perf_counter() - started
    results["machine"]["load_average_at_end"] = list(os.getloadavg())

    results["targets"] = report.targets(results)
    table = report.markdown(results)
    (REPO / "bench" / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    (REPO / "bench" / "results.md").write_text(table)
    if not args.no_readme and wanted == everything:
        report.update_readme(REPO / "README.md", table)
    shutil.rmtree(WORK / "runs", ignore_errors=True)
    shutil.rmtree(WORK / "tune", ignore_errors=True)
    print(table)
    log(f"done in {results['seconds'] / 60:.1f} min; wrote bench/results.json and bench/results.md")


if __name__ == "__main__":
    main()
