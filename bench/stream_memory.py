"""Does `mlcli train` with data.stream hold its memory? Peak RSS for one epoch on 400,000 and on
4,000,000 rows x 64 features (the issue's bar: the 4M-row peak within 20% of the 400k-row peak).

Writes each data set as Parquet shards (500,000 rows per shard, 65,536-row row groups, float32
features, a 10-class label that depends on the features), chunk by chunk so the generator itself never
holds the data, then runs `python -m mlcli train CONFIG` as a separate process per size, with
data.train a glob of the shards, data.stream true, a 5% validation split held out by row hash,
shuffling on, batch 1,024, one epoch, and measures that process's peak RSS with /usr/bin/time -f %M.
`--in-memory` also measures data.stream false at each size, for comparison.

`--typed` measures a typed table instead (issue 16): a categorical column of 40 values, a categorical
of 1,000 values embedded, numbers with 10% gaps (missing: auto, a median fill and a was-missing
column), a date, and 4 more numbers — the vocabularies and statistics are built in the first pass
(mlcli.data.stream_features); default sizes 200,000 and 2,000,000 rows; results in
bench/results/stream_memory_typed.json.

    python bench/stream_memory.py [--rows 400000 4000000] [--in-memory] [--keep-data] [--typed]

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
TYPED_RESULTS = REPO / "bench" / "results" / "stream_memory_typed.json"
TYPED_ROWS = (200_000, 2_000_000)
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


TYPED_CONFIG = """\
# written by bench/stream_memory.py --typed
name: stream-bench-typed
seed: 7
data:
  train: {train}
  validation: 0.05
  stream: {stream}
  shuffle: true
  label: label
  features:
    - {{name: shop, type: categorical}}
    - {{name: product, type: categorical, encoding: embedding, embedding_dim: 8}}
    - {{name: price, type: numeric}}
    - {{name: day, type: date}}
    - x0
    - x1
    - x2
    - x3
model:
  layers:
    - {{type: Dense, units: 64, activation: relu}}
    - {{type: Dense, units: 4, activation: softmax}}
optimizer: {{type: adam, learning_rate: 0.001}}
training:
  epochs: 1
  batch_size: 1024
runtime:
  device: cpu
"""


def write_typed_shards(folder: Path, rows: int, seed: int = 0, chunk: int = 100_000) -> int:
    """`rows` rows of a typed table (see the module docstring) as Parquet shards; the bytes written."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shops = np.array([f"shop-{i:02d}" for i in range(40)], dtype=object)
    products = np.array([f"p{i:04d}" for i in range(1000)], dtype=object)
    written, shard = 0, 0
    while written < rows:
        size = min(SHARD_ROWS, rows - written)
        with pq.ParquetWriter(folder / f"part-{shard:04d}.parquet", _typed_schema(pa)) as writer:
            for start in range(0, size, chunk):
                n = min(chunk, size - start)
                shop, product = rng.integers(0, 40, n), rng.integers(0, 1000, n)
                price = rng.gamma(2.0, 20.0, n)
                days = rng.integers(0, 3 * 365, n)
                x = rng.normal(size=(n, 4))
                score = (shop % 4) + (price > 40) + x[:, 0] + (days % 7 >= 5) + rng.normal(0, 0.5, n)
                label = np.clip(score, 0, 3.99).astype(np.int64)
                gaps = rng.random(n) < 0.10
                columns = [pa.array(shops[shop]), pa.array(products[product]),
                           pa.array(np.where(gaps, np.nan, price), from_pandas=True),
                           pa.array(days.astype("int32"), pa.int32()).cast(pa.date32())]
                columns += [pa.array(x[:, j].astype(np.float32)) for j in range(4)] + [pa.array(label)]
                writer.write_table(pa.Table.from_arrays(columns, schema=_typed_schema(pa)), row_group_size=65_536)
        written += size
        shard += 1
    return sum(p.stat().st_size for p in folder.glob("*.parquet"))


def _typed_schema(pa):
    return pa.schema([("shop", pa.string()), ("product", pa.string()), ("price", pa.float64()),
                      ("day", pa.date32())] + [(f"x{j}", pa.float32()) for j in range(4)] + [("label", pa.int64())])


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


def run_one(work: Path, data: Path, rows: int, stream: bool, template: str = CONFIG) -> dict:
    config = work / f"stream-{rows}-{stream}.yaml"
    config.write_text(template.format(train=str(data / "part-*.parquet"), stream=str(stream).lower()))
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


def peak_memory(rows: list[int], typed: bool = False, in_memory: bool = False, keep_data: bool = False,
            echo: bool = True) -> dict:
    """Peak RSS of one streamed epoch at each size (and data.stream: false with `in_memory`); writes the
    JSON report and returns it with "growth" (largest over smallest peak, minus 1) and "tolerance"."""
    write, template = (write_typed_shards, TYPED_CONFIG) if typed else (write_shards, CONFIG)
    work = Path(tempfile.mkdtemp(prefix="mlcli-stream-bench-"))
    results, sizes = [], {}
    try:
        for count in rows:
            data = (REPO / "bench" / "results" / "data" if keep_data else work) / f"stream-{count}"
            sizes[count] = write(data, count)
            for stream in ([True, False] if in_memory else [True]):
                result = run_one(work, data, count, stream, template)
                result["data_mb"] = round(sizes[count] / 2**20, 1)
                results.append(result)
                if echo:
                    print(f"{count:>10,} rows  stream={str(stream).lower():5}  data {result['data_mb']:>8.1f} MB  "
                          f"peak RSS {result['peak_rss_mb']:>8.1f} MB  {result['seconds']:>7.1f} s", flush=True)
            if not keep_data:
                shutil.rmtree(data, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    small, large = (next(r for r in results if r["rows"] == n and r["stream"]) for n in rows)
    growth = large["peak_rss_mb"] / small["peak_rss_mb"] - 1
    what = ("a typed table (2 categorical, numbers with gaps, a date, 4 numbers)" if typed
            else "64 float32 features")
    path = TYPED_RESULTS if typed else RESULTS
    common.write_memory_report(path, {
        "benchmark": f"mlcli train, data.stream: true, one epoch, Parquet shards of {what}",
        "method": "/usr/bin/time -f %M (peak RSS of the mlcli process)",
        "config": template.format(train="<shards>/part-*.parquet", stream="true"),
        "results": results,
    }, growth, TOLERANCE)
    return {"rows": list(rows), "results": results, "small_peak_rss_mb": small["peak_rss_mb"],
            "large_peak_rss_mb": large["peak_rss_mb"], "growth": growth, "tolerance": TOLERANCE,
            "path": str(path.relative_to(REPO))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs=2, default=None)
    parser.add_argument("--typed", action="store_true", help="a typed table (categories, gaps, a date) instead")
    parser.add_argument("--in-memory", action="store_true", help="also measure data.stream: false")
    parser.add_argument("--keep-data", action="store_true", help="keep the generated shards in bench/results/data")
    args = parser.parse_args()
    args.rows = args.rows or list(TYPED_ROWS if args.typed else (400_000, 4_000_000))
    result = peak_memory(args.rows, typed=args.typed, in_memory=args.in_memory, keep_data=args.keep_data)
    growth = result["growth"]
    print(f"peak memory growth from {args.rows[0]:,} to {args.rows[1]:,} rows: {growth:+.1%} "
          f"(bar: {TOLERANCE:.0%}) -> {result['path']}")
    if growth > TOLERANCE:
        sys.exit(1)


if __name__ == "__main__":
    main()
