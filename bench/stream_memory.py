"""Does `mlcli train` with data.stream hold its memory? Peak RSS for one epoch on 400,000 and on
4,000,000 rows x 64 features (the issue's bar: the 4M-row peak within 20% of the 400k-row peak).

Writes each data set as Parquet shards (500,000 rows per shard, 65,536-row row groups, float32
features, a 10-class label that depends on the features), chunk by chunk so the generator itself never
holds the data, then runs `python -m mlcli train CONFIG` as a separate process per size, with
data.train a glob of the shards, data.stream true, a 5% validation split held out by row hash,
shuffling on, batch 1,024, one epoch, and measures that process's peak RSS with /usr/bin/time -f %M.
`--in-memory` also measures data.stream false at each size, for comparison.

    python bench/stream_memory.py [--rows 400000 4000000] [--in-memory] [--keep-data]

Prints a table and writes bench/results/stream_memory.json.
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

sys.path.insert(0, str(Path(__file__).absolute().parent))
import common  # noqa: E402  (bench/common.py: shared by the suite)

REPO = Path(__file__).absolute().parent.parent
RESULTS = REPO / "bench" / "results" / "stream_memory.json"
TOLERANCE = 0.20
FEATURES = 64
SHARD_ROWS = 500_000

CONFIG = """\
# written by bench/stream_memory.py
name: stream-bench
seed: 7
data:
  train: {train}
  validation: 0.05
  stream: {stream}
  shuffle: true
model:
  layers:
    - {{type: Dense, units: 64, activation: relu}}
    - {{type: Dense, units: 64, activation: relu}}
    - {{type: Dense, units: 10, activation: softmax}}
optimizer: {{type: adam, learning_rate: 0.001}}
training:
  epochs: 1
  batch_size: 1024
runtime:
  device: cpu
"""


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def write_shards(folder: Path, rows: int, seed: int = 0, chunk: int = 100_000) -> int:
    """`rows` rows as Parquet shards in `folder`; returns the bytes written."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(1234).normal(size=(FEATURES, 10)).astype(np.float32)
    names = [f"f{i}" for i in range(FEATURES)]
    schema = pa.schema([(n, pa.float32()) for n in names] + [("label", pa.int64())])
    written, shard = 0, 0
    while written < rows:
        size = min(SHARD_ROWS, rows - written)
        with pq.ParquetWriter(folder / f"part-{shard:04d}.parquet", schema) as writer:
            for start in range(0, size, chunk):
                n = min(chunk, size - start)
                x = rng.normal(size=(n, FEATURES)).astype(np.float32)
                label = np.argmax(x @ weights + rng.normal(scale=0.5, size=(n, 10)), axis=1)
                columns = [pa.array(x[:, j]) for j in range(FEATURES)] + [pa.array(label.astype(np.int64))]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema), row_group_size=65_536)
        written += size
        shard += 1
    return sum(p.stat().st_size for p in folder.glob("*.parquet"))


def measure(command: list[str]) -> tuple[int, float]:
    """(peak RSS in bytes, seconds) of a command run as its own process."""
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as report:
        started = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report.name, *command], check=True, env=_env(),
                       cwd=REPO, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        return int(report.read().strip().splitlines()[-1]) * 1024, seconds


def run_one(work: Path, data: Path, rows: int, stream: bool) -> dict:
    config = work / f"stream-{rows}-{stream}.yaml"
    config.write_text(CONFIG.format(train=str(data / "part-*.parquet"), stream=str(stream).lower()))
    out = work / f"run-{rows}-{stream}"
    peak, seconds = measure([sys.executable, "-m", "mlcli", "train", str(config), "--output", str(out),
                             "--force", "--quiet"])
    manifest = json.loads((out / "run.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return {"rows": rows, "stream": stream, "train_rows": manifest["rows"]["train"],
            "validation_rows": manifest["rows"].get("validation"), "peak_rss_mb": round(peak / 2**20, 1),
            "seconds": round(seconds, 1), "rows_per_second": int(rows / seconds),
            "val_accuracy": round(metrics.get("val_accuracy", float("nan")), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs=2, default=[400_000, 4_000_000])
    parser.add_argument("--in-memory", action="store_true", help="also measure data.stream: false")
    parser.add_argument("--keep-data", action="store_true", help="keep the generated shards in bench/results/data")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlcli-stream-bench-"))
    results, sizes = [], {}
    try:
        for rows in args.rows:
            data = (REPO / "bench" / "results" / "data" if args.keep_data else work) / f"stream-{rows}"
            sizes[rows] = write_shards(data, rows)
            for stream in ([True, False] if args.in_memory else [True]):
                result = run_one(work, data, rows, stream)
                result["data_mb"] = round(sizes[rows] / 2**20, 1)
                results.append(result)
                print(f"{rows:>10,} rows  stream={str(stream).lower():5}  data {result['data_mb']:>8.1f} MB  "
                      f"peak RSS {result['peak_rss_mb']:>8.1f} MB  {result['seconds']:>7.1f} s", flush=True)
            if not args.keep_data:
                shutil.rmtree(data, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    small, large = (next(r for r in results if r["rows"] == n and r["stream"]) for n in args.rows)
    growth = large["peak_rss_mb"] / small["peak_rss_mb"] - 1
    common.write_memory_report(RESULTS, {
        "benchmark": "mlcli train, data.stream: true, one epoch, Parquet shards of 64 float32 features",
        "method": "/usr/bin/time -f %M (peak RSS of the mlcli process)",
        "config": CONFIG.format(train="<shards>/part-*.parquet", stream="true"),
        "results": results,
    }, growth, TOLERANCE)
    print(f"peak memory growth from {args.rows[0]:,} to {args.rows[1]:,} rows: {growth:+.1%} "
          f"(bar: {TOLERANCE:.0%}) -> {RESULTS.relative_to(REPO)}")
    if growth > TOLERANCE:
        sys.exit(1)


if __name__ == "__main__":
    main()
