"""runtime.distribute: which tf.distribute strategy trains the model, and what that changes for a run.

- none: the default strategy, one device.
- mirrored: tf.distribute.MirroredStrategy over the chosen devices of this machine (several GPUs,
  or the CPU split by `device: cpu:N`).
- multi_worker: tf.distribute.MultiWorkerMirroredStrategy over the machines listed in TF_CONFIG.
- auto: multi_worker when TF_CONFIG is set, mirrored when more than one device is chosen, else none.

In every case training.batch_size is the GLOBAL batch: each step's batch is split across all replicas
(of all workers) and their gradients are summed, so a step is the one-device step on the same rows.
The learning rate is never scaled with the number of replicas.

TF_CONFIG is read here without TensorFlow (`cluster_role`), so that the CLI knows before any work
whether this process is the chief (the one that writes the run directory).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcli.data.pipeline import steps_per_epoch
from mlcli.errors import ClusterError, UsageError
from mlcli.runtime import import_tensorflow

_JOBS = ("chief", "worker")
_STRATEGY = {"mirrored": "MirroredStrategy", "multi_worker": "MultiWorkerMirroredStrategy"}
_TF_CONFIG_HELP = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
                   '"task": {"type": "worker", "index": 0}}\'')


@dataclass(frozen=True)
class ClusterRole:
    """This process's place in TF_CONFIG's cluster."""

    task_type: str  # chief | worker
    index: int
    workers: int  # chief + workers
    is_chief: bool
    addresses: dict[str, list[str]] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.task_type} {self.index} of {self.workers} workers"

    @property
    def leader(self) -> str:
        return f"/job:{'chief' if 'chief' in self.addresses else 'worker'}/replica:0/task:0"

    def peers(self) -> list[str]:
        return [address for job in _JOBS for i, address in enumerate(self.addresses.get(job, []))
                if (job, i) != (self.task_type, self.index)]


def cluster_role(distribute: str, environ: dict | None = None) -> ClusterRole | None:
    """This process's role under runtime.distribute (multi_worker, or auto with TF_CONFIG set);
    None when the run is not multi-worker. A malformed TF_CONFIG is a usage error (exit 2)."""
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if distribute == "multi_worker" and not text:
        raise UsageError("runtime.distribute is multi_worker but the TF_CONFIG environment variable is not set",
                         hint=f"on each machine, set e.g. {_TF_CONFIG_HELP} (its own index on each)")
    if distribute not in ("auto", "multi_worker") or not text:
        return None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"TF_CONFIG is not valid JSON ({exc.msg} at character {exc.pos})",
                         hint=f"expected e.g. {_TF_CONFIG_HELP}") from None
    cluster = document.get("cluster") if isinstance(document, dict) else None
    task = document.get("task") if isinstance(document, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise UsageError("TF_CONFIG needs a \"cluster\" object and a \"task\" object", hint=f"e.g. {_TF_CONFIG_HELP}")
    others = sorted(set(cluster) - set(_JOBS))
    if others:
        raise UsageError(f"TF_CONFIG: the cluster has {', '.join(others)} task(s); mlcli trains with "
                         "MultiWorkerMirroredStrategy, whose cluster holds only chief and worker tasks")
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise UsageError(f"TF_CONFIG: cluster.{job} must be a list of \"host:port\" addresses, got {addresses!r}")
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        raise UsageError(f"TF_CONFIG: task {task!r} is not in the cluster "
                         f"({', '.join(f'{job}: {len(a)}' for job, a in cluster.items())})",
                         hint="task.type names a cluster job and task.index counts from 0 within it")
    if len(cluster.get("chief", [])) > 1:
        raise UsageError("TF_CONFIG: a cluster has at most one chief")
    workers = sum(len(cluster.get(job, [])) for job in _JOBS)
    is_chief = task_type == "chief" or ("chief" not in cluster and index == 0)
    return ClusterRole(task_type, index, workers, is_chief, {job: list(cluster[job]) for job in cluster})


@dataclass
class Distribution:
    kind: str  # none | mirrored | multi_worker
    strategy: Any  # a tf.distribute.Strategy (the default one for none)
    replicas: int
    devices: list[str]
    role: ClusterRole | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def distributed(self) -> bool:
        return self.kind != "none"

    @property
    def writes_run_dir(self) -> bool:
        """Only the chief writes the run directory; other workers work in a temporary one."""
        return self.role is None or self.role.is_chief

    def scope(self):
        """Variables (model, optimizer, metrics) are created in here to be mirrored."""
        return self.strategy.scope() if self.distributed else contextlib.nullcontext()

    def prepare_model(self, model) -> None:
        """Before the first step of fit and evaluate, Keras 3 reduces a whole (features, targets) batch
        across the replicas in one call, only to learn its shapes and dtypes: MirroredStrategy fails when
        the replicas' parts differ in size (a last or only batch that does not split evenly, e.g. 33 rows
        on 2 replicas: "AddN [17,13] != [16,13]"), and MultiWorkerMirroredStrategy rejects the call
        outright (keras-team/keras#20585). So the model is built from the first replica's part of the
        first batch instead; the training steps are Keras's, unchanged."""
        if not self.distributed:
            return
        import tensorflow as tf  # deferred: imports TensorFlow
        from keras import tree  # deferred: imports TensorFlow

        strategy = self.strategy

        def local(value):
            return strategy.experimental_local_results(value)[0] \
                if isinstance(value, tf.distribute.DistributedValues) else value

        def symbolic_build(iterator=None, data_batch=None):
            if iterator is not None:
                for _, _, batches in iterator:
                    data_batch = tree.map_structure(local, next(batches))
                    break
            with strategy.scope():
                model._symbolic_build(data_batch=data_batch)

        model._maybe_symbolic_build = symbolic_build
        if self.kind == "multi_worker":
            _mean_of_scalars_across_workers()

    def global_batch(self, requested: int) -> int:
        """training.batch_size rounded up to a multiple of the replicas, with a note when it changes.

        Each replica averages the loss over its own rows and the replicas' gradients are summed, so a
        step is the one-device step on the same rows only when every replica gets as many rows."""
        batch = -(-requested // self.replicas) * self.replicas
        if batch != requested:
            self.notes.append(f"training.batch_size {requested} -> {batch}: a global batch is split evenly across "
                              f"the {self.replicas} replicas ({batch // self.replicas} rows each), so that each step "
                              "is the one-device step on its rows")
        return batch

    def steps_per_execution(self, config, rows: int) -> int:
        """training.steps_per_execution; auto runs about 4,096 rows per TensorFlow call (same math).
        1 under a strategy: Keras 3.x with tf.distribute fails with more than one step per call."""
        value = config.training.steps_per_execution
        if self.distributed:
            if value not in ("auto", 1):
                self.notes.append(f"training.steps_per_execution {value} -> 1: Keras runs one step per call "
                                  "under a tf.distribute strategy")
            return 1
        steps = steps_per_epoch(rows, config.training.batch_size)
        if value == "auto":
            value = max(1, 4096 // config.training.batch_size)
            every = config.training.checkpoint_every_steps
            if every:  # land on every save point: the largest divisor of checkpoint_every_steps that fits
                value = max(d for d in range(1, min(value, every) + 1) if every % d == 0)
        return max(1, min(int(value), steps))

    def facts(self, batch_size: int, steps_per_execution: int, requested: int | None = None,
              jit_compile: bool | None = None) -> dict:
        """run.json's "distribute" record; `requested`: training.batch_size when global_batch rounded it;
        `jit_compile`: whether Keras compiles the training step with XLA (training.jit_compile resolved)."""
        facts = {
            "strategy": _STRATEGY.get(self.kind),
            "replicas": self.replicas,
            "devices": self.devices,
            "global_batch_size": batch_size,
            "per_replica_batch_size": -(-batch_size // self.replicas),
            "steps_per_execution": steps_per_execution,
        }
        if jit_compile is not None:
            facts["jit_compile"] = jit_compile
        if requested is not None and requested != batch_size:
            facts["requested_batch_size"] = requested
        if self.role is not None:
            facts.update(workers=self.role.workers, task={"type": self.role.task_type, "index": self.role.index},
                         chief=self.role.is_chief)
        return facts

    def describe(self, batch_size: int) -> str | None:
        if not self.distributed:
            return None
        where = f" on {self.role.workers} workers ({self.role.describe()})" if self.role else ""
        return (f"{_STRATEGY[self.kind]}: {self.replicas} replicas{where}; global batch {batch_size} "
                f"(about {-(-batch_size // self.replicas)} rows per replica), learning rate unchanged")


def create(runtime, device) -> Distribution:
    """The strategy for runtime.distribute on the chosen device(s). Call before TensorFlow runs any
    op: MultiWorkerMirroredStrategy configures the runtime's collectives when it is created."""
    tf = import_tensorflow()
    role = cluster_role(runtime.distribute)
    kind = runtime.distribute
    notes = []
    if kind == "auto":
        kind = "multi_worker" if role else "mirrored" if device.count > 1 else "none"
    if kind == "multi_worker":
        strategy = _multi_worker(tf, role, runtime.cluster_timeout, runtime.peer_timeout)
        devices = [d for d in strategy.extended.worker_devices]
    elif kind == "mirrored":
        devices = device.logical_names()
        strategy = tf.distribute.MirroredStrategy(devices)
    else:
        if device.count > 1:
            notes.append(f"runtime.distribute none: training on one device ({device.logical_names()[0]}) "
                         f"of the {device.count} chosen")
        strategy = tf.distribute.get_strategy()
        devices = device.logical_names()[:1]
    return Distribution(kind, strategy, int(strategy.num_replicas_in_sync), devices, role, notes)


def _multi_worker(tf, role: ClusterRole, timeout: int, peer_timeout: int):
    """MultiWorkerMirroredStrategy from TF_CONFIG; fails (exit 4) when the cluster has not come
    together within `timeout` seconds, instead of waiting forever for a peer. A collective step
    waits at most `peer_timeout` seconds for the other workers (runtime.peer_timeout)."""
    _bound_cluster_join(role, timeout, peer_timeout)
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    except (tf.errors.OpError, RuntimeError, ValueError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, tf.errors.DeadlineExceededError) or "timed out" in text.lower():
            what = f"not every worker joined within runtime.cluster_timeout ({timeout} s)"
        else:
            what = f"the cluster could not be set up ({text})"
        raise ClusterError(
            f"multi-worker run, {role.describe()}: {what}; the other worker(s): {', '.join(role.peers()) or 'none'}",
            hint="start the same `mlcli train` command on every machine in TF_CONFIG's cluster, each with its own "
                 "task index, and check that the host:port addresses are reachable from every machine",
        ) from None


def _bound_cluster_join(role: ClusterRole, timeout: int, peer_timeout: int) -> None:
    """TensorFlow's coordination service, configured as MultiWorkerMirroredStrategy configures it,
    plus a deadline for every task to register. TensorFlow exposes no public knob for this; without
    one, a worker whose peers never come waits forever (the default register timeout is 1 hour, and
    the chief does not apply it without the register barrier)."""
    try:
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2  # deferred: imports TensorFlow
        from tensorflow.python.eager import context  # deferred: imports TensorFlow
    except ImportError:  # a TensorFlow laid out differently: its own defaults apply
        return
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(role.addresses[job]))
            for job in _JOBS if job in role.addresses]
    ctx = context.context()
    ctx.configure_coordination_service(service_type="standalone", service_leader=role.leader,
                                       coordinated_jobs=jobs, cluster_register_timeout_in_ms=timeout * 1000,
                                       heartbeat_timeout_in_ms=peer_timeout * 1000)
    config = getattr(ctx, "_coordination_service_config", None)
    if config is not None and hasattr(config, "cluster_register_with_barrier"):
        config.cluster_register_with_barrier = True


def train_in_scratch(train, request, *args):
    """A multi-worker run's workers other than the chief train in step with it and save when it saves
    (saving takes part in collectives), into a temporary directory that is then removed: only the
    chief's run directory is kept. `train(request, *args)` is the run; args end with the Distribution."""
    distribution = args[-1]
    scratch = Path(tempfile.mkdtemp(prefix="mlcli-worker-"))
    try:
        result = train(dataclasses.replace(request, run_dir=scratch), *args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.notes.append(f"{distribution.role.describe()}: the chief writes the run directory; this worker "
                        "kept no files")
    return dataclasses.replace(result, run_dir=request.run_dir)


def _mean_of_scalars_across_workers() -> None:
    """Keras 3 (keras-team/keras#20585): after each step under MultiWorkerMirroredStrategy, Keras averages
    the replicas' scalar logs with strategy.reduce(MEAN, axis=0), which fails on scalars. Average them
    with axis=None (an all-reduce), so every worker logs the same values (and, say, stops on the same NaN)."""
    try:
        from keras.src.backend.tensorflow import trainer  # deferred: imports TensorFlow
    except ImportError:
        return
    original = getattr(trainer, "reduce_per_replica", None)
    if original is None or getattr(original, "mlcli_patched", False):
        return
    import tensorflow as tf  # deferred: imports TensorFlow
    from keras import tree  # deferred: imports TensorFlow

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None)
                                      if isinstance(v, tf.distribute.DistributedValues) else v, values)
        return original(values, strategy, reduction)

    reduce_per_replica.mlcli_patched = True
    trainer.reduce_per_replica = reduce_per_replica
