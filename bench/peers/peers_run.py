"""`make bench-peers`: mlcli beside a plain Keras script and LightningCLI (CPU torch) on the same jobs.

Optional, not part of `make bench` or `make test`: LightningCLI lives in its own environment,
bench/.peers-venv (bench/peers/install.sh makes it). One invocation measures, the sides interleaved
round by round (A B C, C B A, ...), medians of --rounds:

1. the seed job, whole process: `mlcli train configs/digits.yaml`, `bench/baseline_keras.py --tuned`
   and `bench/peers/lightning_seed.py --config bench/peers/lightning_seed.yaml` (the same math);
2. the framework import alone: `python -c "import tensorflow"` and `python -c "import lightning"`
   (the Lightning environment's Python), in the same rounds as 1;
3. the 160,000 x 64 job (bench/common.py's generated set): 64-64-10, batch 256, 3 epochs, no
   validation — training samples/s (epochs after the first) and peak RSS of each.

Own overhead = whole seed-job process - its framework's import, both medians of this run.
Writes bench/results-peers.json (every run's raw numbers) and bench/results-peers.md (the table).

    python bench/peers/peers_run.py [--peers-python bench/.peers-venv/bin/python] [--rounds 3]
                                    [--only seed large]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).absolute().parent.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(1, str(BENCH.parent))

import common  # noqa: E402
import run as bench_run  # noqa: E402
from common import REPO, WORK, median  # noqa: E402

PYTHON = sys.executable
KERAS = str(BENCH / "baseline_keras.py")
LIGHTNING = str(BENCH / "peers" / "lightning_seed.py")
LIGHTNING_CONFIG = str(BENCH / "peers" / "lightning_seed.yaml")
SEED_CONFIG = "configs/digits.yaml"
LARGE_ROWS, LARGE_TEST_ROWS, LARGE_BATCH, LARGE_EPOCHS = 160_000, 2_000, 256, 3
SIDES = ("mlcli", "keras", "lightning")
OUT = WORK / "peers"


def _measure(command: list[str]) -> dict:
    """Whole-process wall seconds, peak RSS and CPU seconds (user + system, every thread) of `command`,
    from GNU time. CPU seconds move much less than wall seconds when other work shares the machine."""
    handle, report = tempfile.mkstemp(suffix=".time")
    os.close(handle)
    try:
        started = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", report, *command], cwd=REPO,
                              env=common.env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              check=False)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
        with open(report) as handle_:
            rss_kb, user, system = handle_.read().strip().splitlines()[-1].split()
    finally:
        os.unlink(report)
    return {"seconds": seconds, "peak_rss_mb": int(rss_kb) / 1024, "cpu_seconds": float(user) + float(system),
            "stdout": done.stdout}


def _times(done: dict) -> dict:
    return {key: done[key] for key in ("seconds", "cpu_seconds", "peak_rss_mb")}


def _history_seconds(run_dir: Path) -> list[float]:
    with open(run_dir / "history.csv") as handle:
        header = handle.readline().strip().split(",")
        return [float(line.split(",")[header.index("seconds")]) for line in handle if line.strip()]


# ---- 1 + 2: the seed job and the framework imports -------------------------------------------------

def bench_seed(rounds: int, peers_python: str) -> dict:
    mlcli = common.mlcli_command()

    def mlcli_job(index: int) -> dict:
        done = _measure([*mlcli, "train", SEED_CONFIG, "--output", str(OUT / "mlcli-seed"), "--force", "--json",
                         "--quiet"])
        return {**_times(done), "test_accuracy": json.loads(done["stdout"])["metrics"]["test_accuracy"]}

    def keras_job(index: int) -> dict:
        done = _measure([PYTHON, KERAS, "--tuned"])
        return {**_times(done), "test_accuracy": common.last_json(done["stdout"])["test_accuracy"]}

    def lightning_job(index: int) -> dict:
        root = OUT / "lightning-seed"
        shutil.rmtree(root, ignore_errors=True)  # Lightning numbers its versions: each run starts clean
        done = _measure([peers_python, LIGHTNING, "--config", LIGHTNING_CONFIG, "--trainer.default_root_dir",
                         str(root)])
        return {**_times(done), "test_accuracy": common.last_json(done["stdout"])["test_accuracy"]}

    def importing(python: str, module: str):
        def job(index: int) -> dict:
            done = _measure([python, "-c", f"import {module}"])
            return _times(done)
        return job

    runs = bench_run.interleaved(rounds, {"mlcli": mlcli_job, "import_tensorflow": importing(PYTHON, "tensorflow"),
                                          "keras": keras_job, "lightning": lightning_job,
                                          "import_lightning": importing(peers_python, "lightning")})
    result: dict = {"runs": runs}
    for name, values in runs.items():
        result[name] = {key: median(v[key] for v in values) for key in values[0]}
    result["overhead_seconds"] = overheads(result)
    result["overhead_cpu_seconds"] = overheads_by(result, "cpu_seconds")
    return result


def overheads(seed: dict) -> dict[str, float]:
    """Each side's whole seed-job process minus its framework's import, medians of the same run."""
    return overheads_by(seed, "seconds")


def overheads_by(seed: dict, key: str) -> dict[str, float]:
    tensorflow, lightning = seed["import_tensorflow"][key], seed["import_lightning"][key]
    return {"mlcli": seed["mlcli"][key] - tensorflow, "keras": seed["keras"][key] - tensorflow,
            "lightning": seed["lightning"][key] - lightning}


# ---- 3: the 160k-row job -------------------------------------------------------------------------

def large_config(train: Path, test: Path) -> Path:
    return common.mlp_config(OUT / "large.yaml", writer="bench/peers/peers_run.py", name="peers-large",
                             train=train, test=test, epochs=LARGE_EPOCHS, batch_size=LARGE_BATCH)


def bench_large(rounds: int, peers_python: str) -> dict:
    train, test = common.dataset(LARGE_ROWS, seed=3), common.dataset(LARGE_TEST_ROWS, seed=4)
    config = large_config(train, test)
    mlcli = common.mlcli_command()

    def mlcli_job(index: int) -> dict:
        out = OUT / "mlcli-large"
        done = _measure([*mlcli, "train", str(config), "--output", str(out), "--force", "--json", "--quiet"])
        return {**bench_run._rates(_history_seconds(out), LARGE_ROWS), "peak_rss_mb": done["peak_rss_mb"],
                "process_seconds": done["seconds"],
                "test_accuracy": json.loads(done["stdout"])["metrics"]["test_accuracy"]}

    def keras_job(index: int) -> dict:
        done = _measure([PYTHON, KERAS, "--tuned", "--train", str(train), "--test", str(test), "--validation", "0",
                         "--epochs", str(LARGE_EPOCHS), "--batch-size", str(LARGE_BATCH)])
        document = common.last_json(done["stdout"])
        return {**bench_run._rates(document["epoch_seconds"], document["train_rows"]),
                "peak_rss_mb": done["peak_rss_mb"], "process_seconds": done["seconds"],
                "test_accuracy": document["test_accuracy"]}

    def lightning_job(index: int) -> dict:
        root = OUT / "lightning-large"
        shutil.rmtree(root, ignore_errors=True)
        done = _measure([peers_python, LIGHTNING, "--config", LIGHTNING_CONFIG, "--trainer.default_root_dir", str(root),
                         "--trainer.max_epochs", str(LARGE_EPOCHS), "--data.train", str(train), "--data.test",
                         str(test), "--data.validation", "0", "--data.batch_size", str(LARGE_BATCH)])
        document = common.last_json(done["stdout"])
        return {**bench_run._rates(document["epoch_seconds"], document["train_rows"]),
                "peak_rss_mb": done["peak_rss_mb"], "process_seconds": done["seconds"],
                "test_accuracy": document["test_accuracy"]}

    runs = bench_run.interleaved(rounds, {"mlcli": mlcli_job, "keras": keras_job, "lightning": lightning_job})
    result: dict = {"runs": runs, "data": {"train": str(train.relative_to(REPO)), "rows": LARGE_ROWS,
                                           "batch_size": LARGE_BATCH, "epochs": LARGE_EPOCHS}}
    for side, values in runs.items():
        result[side] = {key: median(v[key] for v in values)
                        for key in ("samples_per_second", "peak_rss_mb", "process_seconds", "test_accuracy")}
    return result


# ---- the table -----------------------------------------------------------------------------------

def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def _mb(value: float) -> str:
    return f"{value:,.0f} MB"


def targets(r: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}
    if "seed" in r:
        o = r["seed"]["overhead_seconds"]
        out["overhead"] = {"met": o["mlcli"] <= o["lightning"], "value": o["mlcli"],
                           "target": f"<= LightningCLI's {o['lightning']:.2f} s"}
    return out


def markdown(r: dict) -> str:
    """The table, in bench/report.py's style: one row per measure, a column per side."""
    lines = ["| measure | mlcli | plain Keras (tuned) | LightningCLI | target | met |", "|---|---|---|---|---|---|"]
    t = r.get("targets", {})

    def row(measure: str, mlcli: str, keras: str, lightning: str, target: str = "", met: str = "") -> None:
        lines.append(f"| {measure} | {mlcli} | {keras} | {lightning} | {target} | {met} |")

    if "seed" in r:
        s = r["seed"]
        row("seed job (digits, 64-64-10, batch 32, 10 epochs, 20% validation), whole process",
            _s(s["mlcli"]["seconds"]), _s(s["keras"]["seconds"]), _s(s["lightning"]["seconds"]))
        row("framework import alone (`import tensorflow` / `import lightning`)", "",
            _s(s["import_tensorflow"]["seconds"]), _s(s["import_lightning"]["seconds"]))
        o = s["overhead_seconds"]
        met = "yes" if t["overhead"]["met"] else "**no**"
        row("own overhead: whole process - framework import", _s(o["mlcli"]), _s(o["keras"]), _s(o["lightning"]),
            "mlcli <= LightningCLI", met)
        c = s["overhead_cpu_seconds"]
        row("the same in CPU seconds (user + system, all threads; less moved by other work on the machine)",
            _s(c["mlcli"]), _s(c["keras"]), _s(c["lightning"]))
        row("seed job: test accuracy", f"{100 * s['mlcli']['test_accuracy']:.2f}%",
            f"{100 * s['keras']['test_accuracy']:.2f}%", f"{100 * s['lightning']['test_accuracy']:.2f}%")
        row("seed job: peak RSS", _mb(s["mlcli"]["peak_rss_mb"]), _mb(s["keras"]["peak_rss_mb"]),
            _mb(s["lightning"]["peak_rss_mb"]))
        row("framework import alone: peak RSS", "", _mb(s["import_tensorflow"]["peak_rss_mb"]),
            _mb(s["import_lightning"]["peak_rss_mb"]))
    if "large" in r:
        g = r["large"]
        job = f"{g['data']['rows']:,}x64, 64-64-10, batch {g['data']['batch_size']}, {g['data']['epochs']} epochs"
        row(f"{job}: training samples/s (epochs after the first)",
            *(f"{g[side]['samples_per_second']:,.0f}/s" for side in SIDES))
        row("same job: peak RSS", *(_mb(g[side]["peak_rss_mb"]) for side in SIDES))
        row("same job: whole process", *(_s(g[side]["process_seconds"]) for side in SIDES))
        row("same job: test accuracy", *(f"{100 * g[side]['test_accuracy']:.2f}%" for side in SIDES))
    m = r["machine"]
    lines += ["", f"Medians of {r['rounds']} rounds, the sides interleaved in one invocation; plain Keras is "
              "bench/baseline_keras.py --tuned; LightningCLI is bench/peers/lightning_seed.py "
              f"(torch {r['peers']['torch']}, lightning {r['peers']['lightning']}, CPU, "
              f"{r['peers']['threads']} threads). {m['cpu']}, {m['cores']} cores, load average "
              f"{m['load_average_at_start'][0]:.1f} at the start and {m['load_average_at_end'][0]:.1f} at the end; "
              f"TensorFlow {m['versions']['tensorflow']}, Keras {m['versions']['keras']}; commit {m['commit']}, "
              f"{r['started_at']}, {r['seconds'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def write(results: dict, started: float) -> str:
    """bench/results-peers.json and .md from what has been measured so far; returns the table."""
    results["seconds"] = time.perf_counter() - started
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    results["targets"] = targets(results)
    table = markdown(results)
    (BENCH / "results-peers.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    (BENCH / "results-peers.md").write_text(table)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers-python", default=str(BENCH / ".peers-venv" / "bin" / "python"),
                        help="the Python of the environment holding Lightning (bench/peers/install.sh)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=["seed", "large"])
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("every figure is a median of at least three runs: --rounds must be >= 3")
    if not Path(args.peers_python).is_file():
        parser.error(f"no Lightning environment at {args.peers_python}: run `make bench-peers`, which makes it")
    wanted = set(args.only or ("seed", "large"))
    started = time.perf_counter()
    probe = common.run([args.peers_python, "-c", "import json, lightning, torch; print(json.dumps({'torch': "
                        "torch.__version__, 'lightning': lightning.__version__, 'threads': torch.get_num_threads()}))"])
    results: dict = {"machine": bench_run.machine(), "peers": common.last_json(probe["stdout"]),
                     "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rounds": args.rounds}
    table = ""
    for name, label, bench in (("seed", "seed job and framework imports", bench_seed),
                               ("large", f"{LARGE_ROWS:,}-row job", bench_large)):
        if name in wanted:
            bench_run.log(label)
            results[name] = bench(args.rounds, args.peers_python)
            table = write(results, started)  # after each part: a run cut short keeps what it measured
    shutil.rmtree(OUT, ignore_errors=True)
    print(table)
    bench_run.log(f"done in {results['seconds'] / 60:.1f} min; wrote bench/results-peers.json and bench/results-peers.md")


if __name__ == "__main__":
    main()
