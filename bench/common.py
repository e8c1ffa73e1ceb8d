"""What every benchmark shares: the generated data sets, subprocess timing, peak memory, medians.

The data are generated, never downloaded: a seeded "teacher" network labels Gaussian inputs, and
5% of the labels are replaced at random, so a 64-64-10 student reaches a stable accuracy a few
points below 100% in three epochs and two runs of it can be compared to a point. Files are cached
under bench/results/data/ (gitignored), keyed by their parameters, so a second `make bench` does
not write them again.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).absolute().parent.parent
WORK = REPO / "bench" / "results"
DATA = WORK / "data"
FEATURES = 64
CLASSES = 10
GENERATOR_VERSION = 1  # bump when the generator changes: cached files are keyed by it


# ---- processes ---------------------------------------------------------------------------------

def env() -> dict:
    """The environment every measured process gets: the repo importable, TensorFlow's C++ log quiet
    (both sides alike; mlcli sets the same level itself)."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = str(REPO) + os.pathsep + environment.get("PYTHONPATH", "")
    environment["TF_CPP_MIN_LOG_LEVEL"] = "3"
    environment.pop("MLCLI_DEBUG", None)
    return environment


def mlcli_command() -> list[str]:
    """The installed console script when there is one (what a user runs), else `python -m mlcli`."""
    script = Path(sys.executable).parent / "mlcli"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mlcli"]


def run(command: list[str], *, capture: bool = True, memory: bool = False) -> dict:
    """Run `command` to completion; whole-process wall time, stdout, and peak RSS when asked.

    Peak RSS comes from GNU time's %M (the kernel's maxrss of the process and its waited-for
    children), or from psutil sampling every 20 ms where /usr/bin/time is missing.
    """
    if memory and not Path("/usr/bin/time").is_file():
        return _run_psutil(command)
    report = None
    if memory:
        handle, report = tempfile.mkstemp(suffix=".time")
        os.close(handle)
        command = ["/usr/bin/time", "-f", "%M", "-o", report, *command]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env(), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    result = {"seconds": seconds, "stdout": done.stdout if capture else ""}
    if report is not None:
        with open(report) as handle:
            result["peak_rss"] = int(handle.read().strip().splitlines()[-1]) * 1024
        os.unlink(report)
    return result


def _run_psutil(command: list[str]) -> dict:
    import psutil

    started = time.perf_counter()
    process = psutil.Popen(command, cwd=REPO, env=env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, process.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}")
    return {"seconds": time.perf_counter() - started, "stdout": "", "peak_rss": peak}


def write_memory_report(path: Path, document: dict, growth: float, tolerance: float) -> None:
    """A peak-memory benchmark's JSON: its own fields, then the growth against its bar and the machine."""
    import platform

    import pyarrow

    document = {
        **document,
        "growth": round(growth, 4),
        "tolerance": tolerance,
        "streams": growth <= tolerance,
        "machine": {"python": platform.python_version(), "pyarrow": pyarrow.__version__,
                    "platform": platform.platform(), "cpus": os.cpu_count()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def last_json(text: str) -> dict:
    """The last line of `text` that is a JSON object (the scripts print one)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON line in output: {text[-500:]!r}")


def median(values) -> float:
    return float(statistics.median(values))


# ---- data ----------------------------------------------------------------------------------------

def dataset(rows: int, seed: int, labels: bool = True) -> Path:
    """A CSV of `rows` rows: f0..f63 (4 decimals) and, when `labels`, an integer `label` 0-9."""
    kind = "labelled" if labels else "features"
    path = DATA / f"v{GENERATOR_VERSION}-{kind}-{rows}-seed{seed}.csv"
    if not path.is_file():
        DATA.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        _write(tmp, rows, seed, labels)
        os.replace(tmp, path)
    return path


def _teacher():
    import numpy as np

    rng = np.random.default_rng(1234)  # the same teacher for every file: train and test agree
    return (rng.standard_normal((FEATURES, 48)).astype(np.float32) / np.sqrt(FEATURES),
            rng.standard_normal((48, CLASSES)).astype(np.float32) * 1.5)


def _write(path: Path, rows: int, seed: int, labels: bool, chunk: int = 100_000) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    hidden, out = _teacher()
    rng = np.random.default_rng(seed)
    names = [f"f{i}" for i in range(FEATURES)] + (["label"] if labels else [])
    writer = None
    try:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            x = np.round(rng.standard_normal((n, FEATURES)), 4)
            logits = np.tanh(x.astype(np.float32) @ hidden * 0.5) @ out
            y = logits.argmax(axis=1)
            noisy = rng.random(n) < 0.05
            y[noisy] = rng.integers(0, CLASSES, int(noisy.sum()))
            columns = [pa.array(x[:, j]) for j in range(FEATURES)]
            if labels:
                columns.append(pa.array(y.astype(np.int64)))
            table = pa.Table.from_arrays(columns, names=names)
            if writer is None:
                writer = pacsv.CSVWriter(str(path), table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def interleaved(rounds: int, jobs: dict) -> dict[str, list]:
    """Run every job once per round, the order reversed every other round (A B C, C B A, ...), so that
    a noisy, shared machine slows the sides alike; results by job name."""
    names = list(jobs)
    results: dict[str, list] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            results[name].append(jobs[name](index))
    return results


def mlp_config(path: Path, *, writer: str, name: str, train: Path, test: Path, epochs: int, batch_size: int,
               hidden: tuple[int, ...] = (64, 64), learning_rate: float = 0.01, extra_training: str = "") -> Path:
    """A config training an MLP (relu layers of `hidden` widths, then a CLASSES-way softmax) on a
    generated set without validation (the plain Keras script does none either): the seed network
    with the defaults. `writer` names the bench script in the file's first line."""
    layers = "\n".join(f"    - {{type: Dense, units: {width}, activation: relu}}" for width in hidden)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""# written by {writer}: a 64-{'-'.join(map(str, hidden))}-{CLASSES} MLP on a generated set
name: {name}
seed: 42
data:
  train: {train}
  validation: null
  test: {test}
  label: label
  normalize: standard
model:
  layers:
{layers}
    - {{type: Dense, units: {CLASSES}, activation: softmax}}
optimizer:
  type: adam
  learning_rate: {learning_rate}
loss: categorical_crossentropy
metrics: [accuracy]
training:
  epochs: {epochs}
  batch_size: {batch_size}
{extra_training}""")
    return path
