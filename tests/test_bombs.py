"""Hostile files cannot exhaust the machine: each bomb is built here (small on disk), and the real CLI,
in a subprocess, refuses it with exit 3 naming the file or member and its declared size, within a
peak-memory bound and a time bound measured from this process (the child's memory, sampled).

Data bombs are measured against MLCLI_MEMORY_LIMIT (what mlcli may use), set well below what each
bomb inflates to, so that a bomb refused late would show in the child's peak memory.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

pytestmark = pytest.mark.slow

MiB, GiB = 1 << 20, 1 << 30
NO_TENSORFLOW_RSS = 400 * MiB  # refused before TensorFlow starts: the interpreter, pyarrow and numpy
WITH_TENSORFLOW_RSS = 1200 * MiB  # refused after TensorFlow started (train, validate --deep): ~650 MiB of it
FACTS = {"task": "classification", "features": ["a", "b", "c"], "labels": ["label"], "classes": [0, 1]}


# ---- running the CLI, measured ---------------------------------------------------------------------

@dataclass
class Measured:
    returncode: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes: the child's largest resident set seen
    seconds: float
    cpu_seconds: float  # user + system of the child, last seen: what a CPU-bound bomb would inflate

    def __str__(self) -> str:
        return (f"exit {self.returncode}, peak {self.peak_rss / MiB:.0f} MiB, {self.seconds:.1f} s ({self.cpu_seconds:.1f} s CPU)\n"
                f"--- stderr\n{self.stderr[-3000:]}")


def run_measured(*args, env: dict | None = None, timeout: float = 120) -> Measured:
    """`python -m mlcli ARGS` as conftest.run_process runs it, its resident memory sampled every 10 ms.

    (Not the rusage of the child: Linux carries the high-water mark of the process that forked it,
    this test process with TensorFlow loaded, across exec.)"""
    import psutil

    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        process = psutil.Popen([sys.executable, "-m", "mlcli", *[str(a) for a in args]], stdout=out, stderr=err,
                               stdin=subprocess.DEVNULL, env=full_env, cwd=REPO)
        peak, cpu = 0, 0.0
        while process.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                peak = max(peak, process.memory_info().rss)
                times = process.cpu_times()
                cpu = times.user + times.system
            if time.monotonic() - start > timeout:
                process.kill()
            time.sleep(0.01)
        seconds = time.monotonic() - start
        out.seek(0), err.seek(0)
        return Measured(process.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                        peak, seconds, cpu)


def assert_refused(ran: Measured, *, names: list[str], peak: int, seconds: float = 60) -> None:
    assert ran.returncode == 3, ran
    assert all(name in ran.stderr for name in names), ran
    assert "Traceback" not in ran.stderr, ran
    assert ran.peak_rss < peak, ran
    # CPU seconds, not wall: on the 2-core CI machine the suite's other worker (pytest-xdist) can
    # double a process's wall time, while a bomb being inflated shows as CPU work whatever the load.
    assert ran.cpu_seconds < seconds, ran


# ---- building bombs without inflating them here --------------------------------------------------

_BLOCK = 16 * MiB


def deflated(head: bytes, fill: bytes, size: int, tail: bytes = b"") -> tuple[bytes, int, int]:
    """A raw deflate stream of `head`, `size` bytes of `fill` repeated, then `tail`: (stream, CRC-32,
    inflated length). A block compressed and flushed on its own (Z_FULL_FLUSH) inflates to the same
    bytes wherever it stands, so the stream repeats one compressed block instead of compressing it all."""
    unit = fill * (_BLOCK // len(fill))
    blocks, rest = divmod(size, len(unit))
    assert rest % len(fill) == 0
    last = fill * (rest // len(fill)) + tail
    crc = zlib.crc32(head)
    for _ in range(blocks):
        crc = zlib.crc32(unit, crc)
    crc = zlib.crc32(last, crc)
    end = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = _flushed(head) + _flushed(unit) * blocks + end.compress(last) + end.flush()
    return stream, crc, len(head) + size + len(tail)


def _flushed(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)


@dataclass
class Member:
    name: str
    data: bytes  # as stored
    crc: int
    size: int  # inflated
    method: int  # 0 stored, 8 deflated


def stored(name: str, data: bytes) -> Member:
    return Member(name, data, zlib.crc32(data), len(data), 0)


def bomb(name: str, head: bytes, fill: bytes, size: int, tail: bytes = b"") -> Member:
    return Member(name, *deflated(head, fill, size, tail), 8)


def write_zip(path: Path, members: list[Member]) -> Path:
    """A zip archive of ready-made members (no zip64: every size under 4 GiB)."""
    with open(path, "wb") as handle:
        directory = []
        for m in members:
            offset, name = handle.tell(), m.name.encode()
            fields = (m.method, 0, 0x21, m.crc, len(m.data), m.size, len(name))
            handle.write(struct.pack("<4s2H3H3L2H", b"PK\x03\x04", 20, 0, *fields, 0) + name + m.data)
            directory.append(struct.pack("<4s3H3H3L5H2L", b"PK\x01\x02", 20, 20, 0, *fields, 0, 0, 0, 0, 0, offset)
                             + name)
        start, listing = handle.tell(), b"".join(directory)
        handle.write(listing)
        handle.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(listing), start, 0))
    return path


def write_gzip(path: Path, head: bytes, fill: bytes, size: int) -> Path:
    stream, crc, length = deflated(head, fill, size)
    # ISIZE is the length mod 4 GiB: nothing a reader can trust
    path.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + stream + struct.pack("<2L", crc, length % (1 << 32)))
    return path


def npy_header(shape: tuple, dtype: str) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


# ---- a real model, and archives made from it ------------------------------------------------------

@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A .keras file as mlcli saves one: 3 input columns a, b, c; classes 0 and 1."""
    import keras

    from mlcli.checkpoint.archive import save_model

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    path = tmp_path_factory.mktemp("model") / "model.keras"
    save_model(model, path, dict(FACTS))
    return path


def rebuilt(model_file: Path, path: Path, *replacing: Member) -> Path:
    """The model's archive with `replacing` members in place of (or besides) its own."""
    names = {m.name for m in replacing}
    with zipfile.ZipFile(model_file) as archive:
        members = [stored(i.filename, archive.read(i.filename)) for i in archive.infolist() if i.filename not in names]
    return write_zip(path, members + list(replacing))


@pytest.fixture
def rows(write) -> Path:
    return write("rows.csv", "a,b,c\n1,2,3\n4,5,6\n")


def test_the_model_predicts_unchanged(model_file, rows, tmp_path):
    """The control: rewritten by this file's zip writer, the archive passes every check."""
    ran = run_measured("predict", rebuilt(model_file, tmp_path / "same.keras"), rows)
    assert ran.returncode == 0, ran
    assert ran.stdout.splitlines()[0] == "prediction,prob_0,prob_1"


# ---- model archives --------------------------------------------------------------------------------

def test_a_json_member_that_inflates_to_a_gigabyte_is_refused_unread(model_file, rows, tmp_path):
    # the bomb: mlcli.json, a few MB on disk, inflating to whitespace (there, 3 GB: 6.2 GB and 33 s)
    keras_file = rebuilt(model_file, tmp_path / "bomb.keras", bomb("mlcli.json", b"{", b" ", GiB, b"}"))
    assert keras_file.stat().st_size < 2 * MiB
    ran = run_measured("predict", keras_file, rows)
    assert_refused(ran, names=["bomb.keras", "mlcli.json", "declares 1.0 GiB", "MLCLI_MAX_ARCHIVE_JSON"],
                   peak=NO_TENSORFLOW_RSS, seconds=20)
    assert ran.stdout == ""


def test_a_member_that_inflates_beyond_the_ratio_is_refused(model_file, write, tmp_path):
    # model.weights.h5 of 1 GiB of zeros in 1 MB: Keras's own check only looks above 4 GiB
    keras_file = rebuilt(model_file, tmp_path / "ratio.keras", bomb("model.weights.h5", b"", b"\0", GiB))
    labelled = write("labelled.csv", "a,b,c,label\n1,2,3,0\n4,5,6,1\n")
    ran = run_measured("evaluate", keras_file, "--data", labelled, "--json")
    assert_refused(ran, names=["ratio.keras", "model.weights.h5", "1.0 GiB", "MLCLI_MAX_COMPRESSION_RATIO"],
                   peak=NO_TENSORFLOW_RSS, seconds=20)
    assert json.loads(ran.stdout)["exit_code"] == 3  # --json: the error as the one document


def test_many_members_that_inflate_together_are_refused(model_file, rows, tmp_path):
    # each under the per-member floor; Keras would extract them all to disk (an archive of assets)
    one = bomb("assets/x", b"", b"\0", 15 * MiB)
    parts = [Member(f"assets/{i}.bin", one.data, one.crc, one.size, 8) for i in range(100)]
    ran = run_measured("predict", rebuilt(model_file, tmp_path / "many.keras", *parts), rows)
    assert_refused(ran, names=["many.keras", "members declare together", "1.5 GiB"], peak=NO_TENSORFLOW_RSS,
                   seconds=20)


def test_weights_larger_than_the_memory_are_refused_before_keras(model_file, rows):
    ran = run_measured("predict", model_file, rows, env={"MLCLI_MEMORY_LIMIT": "4K"})
    assert_refused(ran, names=[str(model_file), "model.weights.h5", "4.0 KiB (MLCLI_MEMORY_LIMIT)"],
                   peak=NO_TENSORFLOW_RSS, seconds=20)


def test_the_limits_can_be_raised_for_a_trusted_file(model_file, rows, tmp_path):
    padded = bomb("mlcli.json", b'{"task": "classification", "features": ["a", "b", "c"], "labels": ["label"], '
                  b'"classes": [0, 1]', b" ", 20 * MiB, b"}")
    keras_file = rebuilt(model_file, tmp_path / "padded.keras", padded)
    refused = run_measured("predict", keras_file, rows)
    assert refused.returncode == 3 and "mlcli.json" in refused.stderr, refused
    ran = run_measured("predict", keras_file, rows,
                       env={"MLCLI_MAX_ARCHIVE_JSON": "32M", "MLCLI_MAX_COMPRESSION_RATIO": "100000"})
    assert ran.returncode == 0, ran
    assert ran.stdout.splitlines()[0] == "prediction,prob_0,prob_1"


def test_memory_available_is_what_the_machine_has_unless_set(monkeypatch):
    from mlcli import limits

    monkeypatch.delenv(limits.MEMORY_LIMIT_VAR, raising=False)
    total = int(Path("/proc/meminfo").read_text().split()[1]) * 1024  # MemTotal, the first line
    available, source = limits.memory_limit()
    assert source == "available" and 0 < available <= total
    monkeypatch.setenv(limits.MEMORY_LIMIT_VAR, "1.5G")
    assert limits.memory_limit() == (3 * GiB // 2, limits.MEMORY_LIMIT_VAR)


def test_a_limit_that_is_not_a_size_is_a_usage_error(model_file, rows):
    ran = run_measured("predict", model_file, rows, env={"MLCLI_MAX_ARCHIVE_JSON": "lots"})
    assert ran.returncode == 2 and "MLCLI_MAX_ARCHIVE_JSON='lots'" in ran.stderr, ran


# ---- data --------------------------------------------------------------------------------------------

CONFIG = """
data: {{train: {train}, validation: 0.2, label: label, stream: {stream}}}
model:
  layers:
    - {{type: Dense, units: 2, activation: softmax}}
training: {{epochs: 1, batch_size: 4096}}
"""


def test_an_npz_of_millions_of_zero_rows_is_refused_by_validate_deep(write, tmp_path):
    # the second bomb: 25 million zero rows in ~2 MB (there, 4.5 GB and 18 s)
    x = bomb("x.npy", npy_header((25_000_000, 8), "<f8"), b"\0", 25_000_000 * 8 * 8)
    y = bomb("y.npy", npy_header((25_000_000,), "<i8"), b"\0", 25_000_000 * 8)
    data = write_zip(tmp_path / "zeros.npz", [x, y])
    assert data.stat().st_size < 4 * MiB
    config = write("c.yaml", CONFIG.format(train="zeros.npz", stream="auto"))
    ran = run_measured("validate", config, "--deep", env={"MLCLI_MEMORY_LIMIT": "1G"})
    assert_refused(ran, names=["zeros.npz", "1.7 GiB", "1.0 GiB (MLCLI_MEMORY_LIMIT)", "Parquet"],
                   peak=WITH_TENSORFLOW_RSS)


def test_an_npz_bomb_is_refused_by_predict_before_tensorflow(model_file, tmp_path):
    x = bomb("x.npy", npy_header((25_000_000, 3), "<f8"), b"\0", 25_000_000 * 3 * 8)
    data = write_zip(tmp_path / "zeros.npz", [x])
    ran = run_measured("predict", model_file, data, env={"MLCLI_MEMORY_LIMIT": "256M"})
    assert_refused(ran, names=["zeros.npz", "572.2 MiB"], peak=NO_TENSORFLOW_RSS, seconds=20)


def test_an_npz_whose_header_lies_about_its_size_is_refused(model_file, tmp_path):
    header = npy_header((10**12, 3), "<f8")  # 24 TB declared, 24 bytes stored
    data = write_zip(tmp_path / "lies.npz", [stored("x.npy", header + bytes(24))])
    ran = run_measured("predict", model_file, data)
    assert_refused(ran, names=["lies.npz", "'x'", "(1000000000000, 3)", "damaged"], peak=NO_TENSORFLOW_RSS,
                   seconds=20)


@pytest.fixture
def parquet_bomb(tmp_path) -> Path:
    """25 million rows of one constant: run-length encoded, a few hundred KB for 1 GB in Arrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    label = (np.arange(1_000_000) >= 500_000).astype(np.int64)  # two classes, in two runs
    chunk = pa.table({**{name: np.zeros(1_000_000) for name in "abcd"}, "label": label})
    path = tmp_path / "constant.parquet"
    pq.write_table(pa.concat_tables([chunk] * 25), path, row_group_size=25_000_000)
    assert path.stat().st_size < 2 * MiB
    return path


def test_a_parquet_bomb_is_refused_when_it_must_be_read_whole(parquet_bomb, write, tmp_path):
    config = write("c.yaml", CONFIG.format(train=parquet_bomb.name, stream="false"))
    ran = run_measured("train", config, "--output", tmp_path / "run", env={"MLCLI_MEMORY_LIMIT": "1G"})
    assert_refused(ran, names=["constant.parquet", "953.7 MiB of data", "(MLCLI_MEMORY_LIMIT)", "data.stream: true"],
                   peak=WITH_TENSORFLOW_RSS)
    assert not (tmp_path / "run" / "model.keras").exists()


def test_a_gzip_csv_bomb_is_refused_after_reading_what_fits(write, tmp_path):
    write_gzip(tmp_path / "zeros.csv.gz", b"a,b,label\n", b"0,0,0\n0,0,1\n", 300 * MiB)
    config = write("c.yaml", CONFIG.format(train="zeros.csv.gz", stream="false"))
    ran = run_measured("validate", config, "--deep", env={"MLCLI_MEMORY_LIMIT": "128M"})
    assert_refused(ran, names=["zeros.csv.gz", "decompresses to more than 32.0 MiB", "(MLCLI_MEMORY_LIMIT)"],
                   peak=WITH_TENSORFLOW_RSS)


def test_auto_streams_what_would_not_fit_from_its_decompressed_size(write, tmp_path):
    # 24 MiB of text in a few KB: streamed (data.stream: auto), where its size on disk would have loaded it
    data = write_gzip(tmp_path / "rows.csv.gz", b"a,b,label\n", b"1,2,0\n3,4,1\n", 24 * MiB)
    assert data.stat().st_size < 64 * 1024
    config = write("c.yaml", CONFIG.format(train="rows.csv.gz", stream="auto"))
    ran = run_measured("validate", config, "--deep", env={"MLCLI_MEMORY_LIMIT": "64M"})
    assert ran.returncode == 0, ran
    assert "(streamed from disk)" in ran.stderr and ran.peak_rss < WITH_TENSORFLOW_RSS, ran


def test_a_csv_whose_first_row_never_ends_is_refused(model_file, tmp_path):
    data = write_gzip(tmp_path / "line.csv.gz", b"a", b"0", 256 * MiB)
    ran = run_measured("predict", model_file, data)
    assert_refused(ran, names=["line.csv.gz", "first row is longer than 16.0 MiB"], peak=NO_TENSORFLOW_RSS,
                   seconds=20)
