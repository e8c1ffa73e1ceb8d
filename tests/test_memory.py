"""Memory does not grow with the data: the peak RSS of a real `mlcli` process at two input sizes, for
training on streamed data (data.stream: true) and for predict.

Each size runs in its own process and the kernel's peak (maxrss) is read exactly, not sampled. The
sizes are small enough for a test and large enough that reading the whole input at once would show:
the larger input alone is a few hundred MB as arrays, the allowed growth a tenth of the peak.
(bench/stream_memory.py and bench/predict_memory.py measure the same at ten times these sizes.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from evalpredict_runs import digits_table, trained

pytestmark = pytest.mark.slow

GROWTH = 0.10  # the larger input's peak may exceed the smaller one's by at most this share

# A wrapper process whose only child is mlcli: its RUSAGE_CHILDREN maxrss is that child's peak.
_PEAK = """
import resource, subprocess, sys
done = subprocess.run([sys.executable, "-m", "mlcli", *sys.argv[1:]], stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(done.returncode)
"""


def peak_rss_mb(*args) -> float:
    """Peak resident memory of `python -m mlcli ARGS`, in MiB (Linux reports maxrss in KiB)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", _PEAK, *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1]) / 1024


def assert_flat(peaks: dict[int, float]) -> None:
    (small, small_peak), (large, large_peak) = sorted(peaks.items())
    growth = large_peak / small_peak - 1
    assert growth <= GROWTH, (f"peak RSS {large_peak:.0f} MiB for {large:,} rows against {small_peak:.0f} MiB "
                              f"for {small:,}: {growth:+.1%}, more than {GROWTH:+.0%}")


# ---- training on streamed data ----------------------------------------------------------------------

STREAM_ROWS = (100_000, 600_000)  # 64 float32 features: 24 MiB and 146 MiB as arrays
SHARD_ROWS = 100_000

STREAMED = """
name: memory
seed: 1
data: {{train: {train}, validation: null, stream: true}}
model:
  layers:
    - {{type: Dense, units: 16, activation: relu}}
    - {{type: Dense, units: 4, activation: softmax}}
training: {{epochs: 1, batch_size: 1024}}
runtime: {{device: cpu}}
"""


def write_shards(folder: Path, rows: int) -> Path:
    """`rows` rows of 64 float32 features and a 4-class label, as Parquet shards of SHARD_ROWS rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    rng = np.random.default_rng(rows)
    weights = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    for index, start in enumerate(range(0, rows, SHARD_ROWS)):
        x = rng.normal(size=(min(SHARD_ROWS, rows - start), 64)).astype(np.float32)
        columns = {f"f{j}": x[:, j] for j in range(64)}
        columns["label"] = np.argmax(x @ weights, axis=1)
        pq.write_table(pa.table(columns), folder / f"part-{index}.parquet", row_group_size=16_384)
    return folder


def test_training_on_streamed_data_holds_its_memory(tmp_path):
    peaks = {}
    for rows in STREAM_ROWS:
        shards = write_shards(tmp_path / f"data-{rows}", rows)
        config = tmp_path / f"stream-{rows}.yaml"
        config.write_text(STREAMED.format(train=shards / "part-*.parquet"))
        peaks[rows] = peak_rss_mb("train", config, "--output", tmp_path / f"run-{rows}", "--quiet")
        assert (tmp_path / f"run-{rows}" / "model.keras").is_file()
    assert_flat(peaks)


# ---- predict --------------------------------------------------------------------------------------

# The first few hundred thousand rows warm up TensorFlow's and Arrow's buffers (about +150 MiB, then
# flat: 50,000 rows would be too few to compare against); as arrays, 900,000 rows are 440 MiB.
PREDICT_ROWS = (300_000, 900_000)


def write_rows(path: Path, rows: int) -> Path:
    """`rows` rows resampled from the digits test set, written 100,000 at a time."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    base = digits_table()
    rng = np.random.default_rng(rows)
    with pacsv.CSVWriter(path, base.schema) as writer:
        for start in range(0, rows, 100_000):
            writer.write_table(base.take(pa.array(rng.integers(0, base.num_rows, min(100_000, rows - start)))))
    return path


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return trained("digits", tmp_path_factory)


def test_predict_holds_its_memory(digits, tmp_path):
    peaks = {}
    for rows in PREDICT_ROWS:
        output = tmp_path / f"out-{rows}.csv"
        peaks[rows] = peak_rss_mb("predict", digits, write_rows(tmp_path / f"in-{rows}.csv", rows),
                                  "--output", output, "--quiet")
        with open(output, "rb") as handle:
            assert sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b"")) == rows + 1
    assert_flat(peaks)


# ---- training on streamed typed data (categories, numbers with gaps, a date) ----------------------

TYPED_ROWS = (20_000, 200_000)  # 6 text columns: read whole, the larger adds about 200 MiB (over 20%)

TYPED_STREAMED = """
name: typed-memory
seed: 1
data:
  train: {train}
  label: label
  validation: 0.1
  stream: {stream}
  shuffle: false  # the shuffle window (65,536 rows) is bounded, but larger than the small file
  features:
    - {{name: price, type: numeric}}
    - {{name: day, type: date}}
    - {{name: product, type: categorical, encoding: embedding, embedding_dim: 4}}
    - c0
    - c1
    - c2
    - c3
    - c4
model:
  layers:
    - {{type: Dense, units: 16, activation: relu}}
    - {{type: Dense, units: 4, activation: softmax}}
training: {{epochs: 1, batch_size: 2048}}
runtime: {{device: cpu}}
"""


def write_typed_shards(folder: Path, rows: int) -> Path:
    """A typed table as Parquet shards: numbers with 10% gaps, dates, a 1,000-value category and five
    more of 20 values each, a 4-class label that follows them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    rng = np.random.default_rng(rows)
    values = np.array([f"value-{i:02d}" for i in range(20)], dtype=object)
    products = np.array([f"product-{i:04d}" for i in range(1000)], dtype=object)
    for index, start in enumerate(range(0, rows, SHARD_ROWS)):
        n = min(SHARD_ROWS, rows - start)
        codes = rng.integers(0, 20, (n, 5))
        price = rng.gamma(2.0, 20.0, n)
        days = rng.integers(0, 1000, n).astype(np.int32)
        columns = {"price": pa.array(np.where(rng.random(n) < 0.1, np.nan, price), from_pandas=True),
                   "day": pa.array(days).cast(pa.date32()),
                   "product": pa.array(products[rng.integers(0, 1000, n)])}
        columns.update({f"c{j}": pa.array(values[codes[:, j]]) for j in range(5)})
        columns["label"] = pa.array(np.clip(codes[:, 0] // 5 + (price > 60), 0, 3).astype(np.int64))
        pq.write_table(pa.table(columns), folder / f"part-{index}.parquet", row_group_size=16_384)
    return folder


def test_training_on_streamed_typed_data_holds_its_memory(tmp_path):
    peaks = {}
    for rows in TYPED_ROWS:
        shards = write_typed_shards(tmp_path / f"data-{rows}", rows)
        config = tmp_path / f"typed-{rows}.yaml"
        config.write_text(TYPED_STREAMED.format(train=shards / "part-*.parquet", stream="true"))
        peaks[rows] = peak_rss_mb("train", config, "--output", tmp_path / f"run-{rows}", "--quiet")
        assert (tmp_path / f"run-{rows}" / "model.keras").is_file()
    assert_flat(peaks)
