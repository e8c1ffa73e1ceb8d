"""A multi-worker run's workers kept in step across a loss and a resume.

- A lost worker: TensorFlow's collective steps fail on every survivor (UnavailableError "tasks are
  unhealthy (stopped sending heartbeats)", "Connection reset by peer", a DeadlineExceeded) once the
  peer's connection closes or its heartbeats stop for runtime.peer_timeout seconds. `lost_peer`
  turns that into one ClusterError (exit 4) naming the worker that stopped and the command that
  resumes the run.
- A resume: only the chief has the run directory (other workers train in a scratch directory that
  is removed), so the chief reads its last saved state and shares it: the progress, history and
  batch through the coordination service's key-value store, the arrays (weights, optimizer, metric
  totals) through one all-reduce in which only the chief's first replica contributes. Every worker
  then restores the SAME values, bit for bit.
- A resume on another number of replicas keeps the run's global batch (so that every step trains
  on the rows it would have), which must split evenly across the replicas now; otherwise exit 2.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlcli.config import config_hash
from mlcli.errors import ClusterError, UsageError, first_line
from mlcli.run import files, resume
from mlcli.run.history import read_history
from mlcli.run.manifest import read_manifest

_KEY = "mlcli/resume-point"
_TASK = re.compile(r"/job:(chief|worker)/(?:replica:\d+/)?task:(\d+)")
_PEER_TROUBLE = re.compile(r"collective|heartbeat|unhealthy|connection|socket closed", re.IGNORECASE)


@dataclass
class SharedPoint:
    """The resume point every worker of a multi-worker run continues from (the chief's)."""

    progress: dict | None  # None: the run starts from the beginning
    history: list[dict]
    arrays: dict[str, np.ndarray]
    batch: int
    note: str | None = None


def kept_batch(run_dir: Path, saved: dict | None, replicas: int, batch: int) -> tuple[int, str | None]:
    """The global batch of a resumed run: the one it was trained with when the number of replicas
    changed (each step then trains on the rows it would have), refused (exit 2) when those rows do not
    split evenly across the replicas now. `saved`: run.json's "distribute" record."""
    if not saved or "global_batch_size" not in saved or saved.get("replicas") in (None, replicas):
        return batch, None
    kept, before = int(saved["global_batch_size"]), int(saved["replicas"])
    workers = f" on {saved['workers']} workers" if saved.get("workers") else ""
    if kept % replicas:
        fits = [n for n in range(1, kept + 1) if kept % n == 0]
        raise UsageError(
            f"{run_dir} was trained with a global batch of {kept} rows on {before} replica{'s' * (before != 1)}"
            f"{workers}; a resumed "
            f"run keeps its global batch, and {replicas} replicas cannot split {kept} rows evenly",
            hint=f"resume it on a number of replicas that divides {kept} ({', '.join(map(str, fits[:10]))}), "
                 "or start a new run",
        )
    return kept, (f"resumed on {replicas} replicas instead of {before}: the global batch of {kept} rows is kept "
                  f"({kept // replicas} rows per replica)")


def share_point(distribution, run_dir: Path, progress: dict | None, batch: int, config) -> SharedPoint:
    """The chief's resume point, on every worker. The chief reads it from `run_dir` (`progress`: its
    state/progress.json, None when the run starts); the others wait up to runtime.cluster_timeout
    seconds for it, and refuse (exit 2) to train a config other than the chief's."""
    from tensorflow.python.eager import context  # deferred: imports TensorFlow

    ctx = context.context()
    if distribution.role.is_chief:
        try:
            header, arrays = _chief_point(run_dir, progress, batch, distribution.replicas)
            header["config_hash"] = config_hash(config)
        except UsageError as exc:  # the others stop with the same words instead of waiting for a step
            ctx.set_config_key_value(_KEY, json.dumps({"refused": exc.message, "hint": exc.hint}))
            _await_readers(ctx, distribution.role, config.runtime.cluster_timeout)
            raise
        ctx.set_config_key_value(_KEY, files.json_text(header))
    else:
        header = json.loads(ctx.get_config_key_value(_KEY, timeout_in_ms=config.runtime.cluster_timeout * 1000))
        if "refused" in header:
            # read: the chief (whose process holds the cluster's key-value store) may now stop
            ctx.set_config_key_value(_read_key(distribution.role.task_type, distribution.role.index), "1")
            raise UsageError(f"the chief refused to continue the run: {header['refused']}", hint=header["hint"])
        if header["config_hash"] != config_hash(config):
            raise UsageError(f"multi-worker run, {distribution.role.describe()}: this worker's resolved config differs "
                             "from the chief's, and every worker must train the same one",
                             hint="start every worker with the same CONFIG and --set options (compare `mlcli "
                                  "validate CONFIG --print` on each machine)")
        arrays = {name: np.zeros(shape, dtype) for name, shape, dtype in header["arrays"]}
    if header["progress"] is not None:
        arrays = _from_chief(distribution, arrays, header["arrays"])
    return SharedPoint(header["progress"], header["history"], arrays, header["batch"], header.get("note"))


def _read_key(job: str, index: int) -> str:
    return f"{_KEY}/read/{job}/{index}"


def _await_readers(ctx, role, timeout_seconds: int) -> None:
    """Until every other worker has read the chief's refusal, or `timeout_seconds` pass: the key-value
    store lives in the chief's process, and a worker still on its way to read it when the chief
    stops would meet a closed connection (exit 4) instead of the refusal (exit 2)."""
    import tensorflow as tf  # deferred: imports TensorFlow

    deadline = time.monotonic() + timeout_seconds
    for job, addresses in role.addresses.items():
        for index in range(len(addresses)):
            if (job, index) == (role.task_type, role.index):
                continue
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return
            try:
                ctx.get_config_key_value(_read_key(job, index), timeout_in_ms=left_ms)
            except tf.errors.OpError:  # that worker is gone or never came: nothing more to wait for
                continue


def _chief_point(run_dir: Path, progress: dict | None, batch: int, replicas: int) -> tuple[dict, dict]:
    if progress is None:
        return {"progress": None, "history": [], "arrays": [], "batch": batch}, {}
    batch, note = kept_batch(run_dir, read_manifest(run_dir).get("distribute"), replicas, batch)
    arrays = resume.load_point(run_dir, progress)
    layout = [[name, list(value.shape), value.dtype.str] for name, value in sorted(arrays.items())]
    history = read_history(run_dir / files.HISTORY)[:int(progress["epochs_completed"])]
    return {"progress": progress, "history": history, "arrays": layout, "batch": batch, "note": note}, arrays


def _from_chief(distribution, arrays: dict[str, np.ndarray], layout: list) -> dict[str, np.ndarray]:
    """One all-reduce (a sum) in which the chief's first replica gives its values and every other
    replica zeros: every worker gets the chief's arrays exactly (float64 holds float32 and the integer
    counters exactly)."""
    import tensorflow as tf  # deferred: imports TensorFlow

    strategy = distribution.strategy
    names = [name for name, _, _ in layout]
    flat = np.concatenate([arrays[n].astype(np.float64).ravel() for n in names]) if names else np.zeros(0)
    given: list[int] = []

    def part(_context):
        first = not given and distribution.role.is_chief
        given.append(1)
        return tf.constant(flat if first else np.zeros_like(flat))

    def total(value):
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, value)

    values = strategy.experimental_distribute_values_from_function(part)
    shared = strategy.experimental_local_results(strategy.run(total, args=(values,)))[0].numpy()
    out, start = {}, 0
    for name, shape, dtype in layout:
        size = int(np.prod(shape, dtype=np.int64))
        out[name] = shared[start:start + size].reshape(shape).astype(np.dtype(dtype))
        start += size
    return out


def lost_peer(exc: BaseException, distribution, command: list[str]) -> ClusterError | None:
    """The error a survivor of a lost worker meets, as one ClusterError (exit 4) naming the worker
    that stopped and how to resume; None when `exc` is something else."""
    role = getattr(distribution, "role", None)
    if role is None or not isinstance(exc, Exception):
        return None
    import tensorflow as tf  # deferred: imports TensorFlow

    text = str(exc)
    plain = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)
    if not isinstance(exc, plain) and not (isinstance(exc, (tf.errors.CancelledError, tf.errors.InternalError))
                                           and _PEER_TROUBLE.search(text)):
        return None
    who = _stopped_workers(text, role)
    why = ("its heartbeats stopped" if "heartbeat" in text.lower()
           else "it did not answer in time" if isinstance(exc, tf.errors.DeadlineExceededError)
           else "its connection closed" if re.search(r"connection|socket closed", text, re.IGNORECASE)
           else first_line(exc))
    return ClusterError(
        f"multi-worker run, {role.describe()}: {who} stopped ({why}), so this worker stopped too",
        hint=f"start every worker again, each with its own TF_CONFIG: {resume_command(command)} — "
             "the run continues from the chief's last saved state",
    )


def _stopped_workers(text: str, role) -> str:
    seen: list[tuple[str, int]] = []
    for job, index in _TASK.findall(text):
        task = (job, int(index))
        if task != (role.task_type, role.index) and task not in seen:
            seen.append(task)
    if not seen:
        return "another worker (TensorFlow did not say which)"
    names = []
    for job, index in seen:
        addresses = role.addresses.get(job, [])
        address = addresses[index] if index < len(addresses) else "?"
        chief = ", the chief" if job == "chief" or ("chief" not in role.addresses and index == 0) else ""
        names.append(f"{job} {index} ({address}{chief})")
    return " and ".join(names)


def resume_command(command: list[str]) -> str:
    """The command that started this worker, with --resume (and without --force)."""
    words = [w for w in command if w != "--force"] or ["mlcli", "train"]
    if "--resume" not in words:
        words.append("--resume")
    return shlex.join(words)
