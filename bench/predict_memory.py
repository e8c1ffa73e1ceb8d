"""Does `mlcli predict` stream? Peak memory for a 200k-row and a 2M-row CSV (docs/contract.md §5).

Trains the tiny digits run (configs/tiny.yaml) into a temporary directory, writes prediction inputs
of each size by resampling the bundled digits test rows (64 features plus the label column, which
predict ignores), then runs `python -m mlcli predict RUN INPUT --output OUT.csv` as a separate
process per size and measures that process's peak RSS with /usr/bin/time -f %M (psutil sampling
where GNU time is missing). Streaming holds if the 2M-row peak is within 15% of the 200k-row peak.

    python bench/predict_memory.py [--rows 200000 2000000] [--keep-data]

Prints a table and writes bench/results/predict_memory.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).absolute().parent))
import common  # noqa: E402  (bench/common.py: process timing and peak memory, shared by the suite)

REPO = Path(__file__).absolute().parent.parent
RESULTS = REPO / "bench" / "results" / "predict_memory.json"
TOLERANCE = 0.15


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def train(run_dir: Path) -> None:
    subprocess.run([sys.executable, "-m", "mlcli", "train", str(REPO / "configs" / "tiny.yaml"),
                    "--output", str(run_dir), "--quiet"], check=True, env=_env(), cwd=REPO)


def write_input(path: Path, rows: int, seed: int = 0, chunk: int = 200_000) -> None:
    """`rows` rows resampled from the digits test set, written chunk by chunk (never all in memory)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    base = pacsv.read_csv(REPO / "mlcli" / "datasets" / "digits_test.csv.gz")
    rng = np.random.default_rng(seed)
    with pacsv.CSVWriter(path, base.schema) as writer:
        for start in range(0, rows, chunk):
            index = rng.integers(0, base.num_rows, size=min(chunk, rows - start))
            writer.write_table(base.take(pa.array(index)))


def measure(run_dir: Path, data: Path, output: Path) -> tuple[int, float]:
    """(peak RSS in bytes, seconds) of one `python -m mlcli predict` process."""
    command = [sys.executable, "-m", "mlcli", "predict", str(run_dir), str(data), "--output", str(output), "--quiet"]
    done = common.run(command, capture=False, memory=True)
    return done["peak_rss"], done["seconds"]


def count_rows(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b"")) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 2_000_000])
    parser.add_argument("--keep-data", action="store_true", help="Leave the temporary directory in place.")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlcli-predict-memory-"))
    try:
        run_dir = work / "run"
        train(run_dir)
        results = []
        for rows in args.rows:
            data = work / f"input-{rows}.csv"
            write_input(data, rows)
            output = work / f"predictions-{rows}.csv"
            peak, seconds = measure(run_dir, data, output)
            written = count_rows(output)
            if written != rows:
                raise SystemExit(f"predict wrote {written} rows for {rows} input rows")
            results.append({"rows": rows, "input_mb": round(data.stat().st_size / 2**20, 1),
                            "peak_rss_mb": round(peak / 2**20, 1), "seconds": round(seconds, 2),
                            "rows_per_second": round(rows / seconds)})
            data.unlink()
            output.unlink()
    finally:
        if args.keep_data:
            print(f"data kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    smallest, largest = results[0], results[-1]
    growth = largest["peak_rss_mb"] / smallest["peak_rss_mb"] - 1
    print(f"{'rows':>10} {'input MB':>9} {'peak RSS MB':>12} {'seconds':>8} {'rows/s':>9}")
    for row in results:
        print(f"{row['rows']:>10,} {row['input_mb']:>9} {row['peak_rss_mb']:>12} {row['seconds']:>8} "
              f"{row['rows_per_second']:>9,}")
    verdict = "streams" if growth <= TOLERANCE else "DOES NOT STREAM"
    print(f"peak RSS {largest['rows']:,} vs {smallest['rows']:,} rows: {growth:+.1%} "
          f"(limit +{TOLERANCE:.0%}): {verdict}")

    common.write_memory_report(RESULTS, {
        "benchmark": "mlcli predict peak memory (CSV in, CSV out, configs/tiny.yaml run)",
        "method": "/usr/bin/time -f %M" if Path("/usr/bin/time").is_file() else "psutil RSS sampling every 20 ms",
        "results": results,
    }, growth, TOLERANCE)
    print(f"wrote {RESULTS.relative_to(REPO)}")
    if growth > TOLERANCE:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
