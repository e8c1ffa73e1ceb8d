"""Hardware and scale: device and precision choice, mirrored and multi-worker runs (tf.distribute),
and data streamed from disk. Runs that split the CPU into logical devices or start several workers
are separate processes: TensorFlow fixes its devices once per process.

Tolerances (measured on this repo's CPU CI; see the README's "Scaling out"):
- one device vs two mirrored replicas vs two workers: the first epoch's training loss agrees to a
  relative 1e-5 (the same batches and the same one-device step, summed in another order), the final
  loss to a relative 5e-3 (float rounding differences grow over ~100 Adam steps; measured: 2.7e-4);
- streamed vs in-memory, shuffle off, no split: the same batches, so every epoch's metrics agree to a
  relative 1e-6 (the normalization statistics are merged chunk by chunk, in float64);
- two workers resumed after a lost worker vs never stopped (runtime.deterministic): the final weights
  exactly; history.csv exactly, except the training metrics of the epoch resumed mid-way, to a
  relative 1e-6 (their running totals are restored summed across replicas).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, assert_resumed, kept_history, run_cli, run_process, saved_point

FIRST_EPOCH_RTOL = 1e-5
FINAL_LOSS_RTOL = 5e-3
STREAM_RTOL = 1e-6
RESUMED_EPOCH_RTOL = 1e-6  # a multi-worker epoch resumed mid-way: its training metrics (measured: 8.9e-8)

DIGITS = """
name: scale
seed: 11
data: {train: builtin:digits/train, validation: 0.2, test: builtin:digits/test}
model:
  layers:
    - {type: Dense, units: 32, activation: relu}
    - {type: Dense, units: 10, activation: softmax}
optimizer: {type: adam, learning_rate: 0.003}
training: {epochs: 3, batch_size: 32}
"""


def _history(run: Path) -> list[dict]:
    with open(run / "history.csv") as handle:
        return [{k: float(v) for k, v in row.items() if k not in ("seconds",)} for row in csv.DictReader(handle)]


def _assert_close_runs(ours: Path, reference: Path) -> None:
    mine, theirs = _history(ours), _history(reference)
    assert len(mine) == len(theirs)
    assert mine[0]["loss"] == pytest.approx(theirs[0]["loss"], rel=FIRST_EPOCH_RTOL)
    assert mine[-1]["loss"] == pytest.approx(theirs[-1]["loss"], rel=FINAL_LOSS_RTOL)


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


# ---- devices and precision: the choice, with GPU lists faked at TensorFlow's boundary -------------

class _Gpu:
    def __init__(self, index: int):
        self.name = f"/physical_device:GPU:{index}"


def test_device_choice_against_faked_gpu_lists(monkeypatch):
    from mlcli import runtime
    from mlcli.errors import DeviceError
    from mlcli.runtime import decide_device

    two = [_Gpu(0), _Gpu(1)]
    assert decide_device("auto", []).describe() == "cpu"
    assert decide_device("auto", two).describe() == "gpu:0,1"
    assert decide_device("cpu", two).describe() == "cpu" and decide_device("cpu", two).gpus == ()
    assert decide_device("cpu:2", []).count == 2 and decide_device("cpu:2", []).describe() == "cpu:2"
    assert decide_device("gpu", two).count == 2
    assert decide_device("gpu:1", two).describe() == "gpu:1"
    assert decide_device("gpu:1,0,1", two).describe() == "gpu:1,0"
    assert decide_device("gpu:0,1", two).logical_names() == ["/gpu:0", "/gpu:1"]
    with pytest.raises(DeviceError) as missing:
        decide_device("gpu:0,2", two)
    assert missing.value.exit_code == 4 and "GPU 2 does not exist" in missing.value.message
    monkeypatch.setattr(runtime, "gpu_diagnosis", lambda: "DIAGNOSIS FROM DOCTOR.")
    with pytest.raises(DeviceError) as none:
        decide_device("gpu", [])
    assert none.value.exit_code == 4 and "DIAGNOSIS FROM DOCTOR." in none.value.message


@pytest.mark.parametrize("capabilities, expected", [
    ([(8, 0)], "mixed_bfloat16"), ([(9, 0), (8, 6)], "mixed_bfloat16"), ([(7, 5)], "mixed_float16"),
    ([(8, 6), (7, 0)], "mixed_float16"), ([(6, 1)], "float32"), ([], "float32"),
])
def test_auto_precision_follows_the_weakest_chosen_gpu(capabilities, expected):
    from mlcli.runtime import DeviceChoice, precision_for

    gpus = DeviceChoice("gpu", tuple(_Gpu(i).name for i in range(max(1, len(capabilities)))))
    assert precision_for("auto", gpus, capabilities) == expected


def test_explicit_precision_is_honoured_and_the_cpu_defaults_to_float32(monkeypatch):
    from mlcli import runtime
    from mlcli.runtime import DeviceChoice, choose_precision, precision_for

    for value in ("float32", "mixed_float16", "mixed_bfloat16"):
        assert precision_for(value, DeviceChoice("cpu"), []) == value
        assert precision_for(value, DeviceChoice("gpu", (_Gpu(0).name,)), [(8, 0)]) == value
    assert precision_for("auto", DeviceChoice("cpu"), [(9, 0)]) == "float32"
    monkeypatch.setattr(runtime, "gpu_capabilities", lambda device: [(7, 0)])
    assert choose_precision("auto", DeviceChoice("gpu", (_Gpu(0).name,))) == "mixed_float16"


def test_a_strategy_runs_one_step_per_call():
    from mlcli.config.schema import Config
    from mlcli.training.distribute import Distribution

    config = Config.model_validate({"data": {"train": "x.csv"}, "training": {"steps_per_execution": 8}})
    mirrored = Distribution("mirrored", None, 2, ["/cpu:0", "/cpu:1"])
    assert mirrored.steps_per_execution(config, 10_000) == 1
    assert "steps_per_execution 8 -> 1" in mirrored.notes[0]
    assert Distribution("none", None, 1, ["/cpu:0"]).steps_per_execution(config, 10_000) == 8


# ---- devices through the CLI -----------------------------------------------------------------------

@pytest.mark.parametrize("device", ["gpu", "gpu:0,1"])
def test_a_required_gpu_that_is_missing_is_exit_4_with_the_diagnosis(device, tmp_path):
    from mlcli.runtime import gpu_diagnosis, visible_gpus

    if visible_gpus():
        pytest.skip("this machine has a GPU")
    started = time.monotonic()
    ran = run_cli("train", REPO / "configs" / "tiny.yaml", "--output", tmp_path / "run", "--device", device)
    assert ran.exit_code == 4, ran
    assert time.monotonic() - started < 30
    assert f"runtime.device is {device!r} but TensorFlow sees no usable GPU" in ran.stderr
    assert gpu_diagnosis() in ran.stderr and "mlcli doctor" in ran.stderr
    _no_traceback(ran.stderr)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("device", ["cpu:0", "tpu", "gpu:a", "cpu:x"])
def test_a_device_that_is_not_one_is_exit_2(device, tmp_path):
    ran = run_cli("train", REPO / "configs" / "tiny.yaml", "--output", tmp_path / "run", "--device", device)
    assert ran.exit_code == 2, ran
    assert "is not a device — expected auto, cpu, gpu, or gpu:0,1 (GPU indices); cpu:2 splits the CPU" in ran.stderr
    _no_traceback(ran.stderr)


def test_cpu_n_in_a_process_whose_tensorflow_has_started_is_exit_4(tmp_path):
    from mlcli.runtime import import_tensorflow

    tf = import_tensorflow()
    tf.constant(1.0)  # TensorFlow has started (as in a notebook that already trained once)
    if len(tf.config.list_logical_devices("CPU")) != 1:
        pytest.skip("this session's TensorFlow was started with a split CPU")
    ran = run_cli("train", REPO / "configs" / "tiny.yaml", "--output", tmp_path / "run", "--device", "cpu:2")
    assert ran.exit_code == 4, ran
    assert "TensorFlow has already started in this process with 1 CPU device(s); cpu:N takes effect only in a " \
           "fresh process" in ran.stderr
    _no_traceback(ran.stderr)


@pytest.mark.slow
def test_mixed_float16_on_request_with_loss_scaling_and_a_float32_output(tmp_path):
    import keras

    run = tmp_path / "run"
    try:
        ran = run_cli("train", REPO / "configs" / "tiny.yaml", "--output", run, "--json",
                      "--set", "runtime.precision=mixed_float16", "--set", "training.epochs=1")
    finally:
        keras.mixed_precision.set_global_policy("float32")  # the in-process session's default
    assert ran.exit_code == 0, ran
    assert json.loads(ran.stdout)["precision"] == "mixed_float16"
    assert json.loads((run / "run.json").read_text())["precision"] == "mixed_float16"
    keras.mixed_precision.set_global_policy("mixed_float16")  # as `--resume` loads it
    try:
        model = keras.saving.load_model(run / "model.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert type(model.optimizer).__name__ == "LossScaleOptimizer"  # Keras's loss scaling for float16
    assert model.layers[-1].dtype_policy.name == "float32"  # softmax in float32
    assert model.layers[-2].dtype_policy.name == "mixed_float16"


# ---- several devices on one machine: MirroredStrategy over two logical CPUs ------------------------

@pytest.fixture(scope="module")
def digits_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scale") / "scale.yaml"
    path.write_text(DIGITS)
    return path


@pytest.fixture(scope="module")
def one_device_run(digits_config, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("one") / "run"
    done = run_process("train", digits_config, "--output", run, "--device", "cpu", "--quiet")
    assert done.returncode == 0, done.stderr
    return run


@pytest.mark.slow
def test_two_mirrored_replicas_match_one_device(digits_config, one_device_run, tmp_path):
    run = tmp_path / "run"
    done = run_process("train", digits_config, "--output", run, "--device", "cpu:2", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["device"] == "cpu:2"
    assert document["distribute"]["strategy"] == "MirroredStrategy"
    assert document["distribute"]["replicas"] == 2
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["distribute"] == document["distribute"]
    assert manifest["distribute"]["global_batch_size"] == 32 and manifest["distribute"]["per_replica_batch_size"] == 16
    assert manifest["distribute"]["steps_per_execution"] == 1
    assert "MirroredStrategy: 2 replicas; global batch 32" in done.stderr
    assert "learning rate unchanged" in done.stderr
    assert float(_history(run)[0]["learning_rate"]) == pytest.approx(0.003)
    _assert_close_runs(run, one_device_run)


EPOCH_ORDER = """
import json, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
from mlcli.data.pipeline import training_dataset
from mlcli.data.split import Split
x = np.arange(21, dtype=np.float32).reshape(-1, 1)
epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
dataset = training_dataset(Split(x, x.copy(), "t"), batch_size=4, seed=3, shuffle=True, epoch=epoch,
                           encoding="regression", num_classes=0)
distributed = strategy.experimental_distribute_dataset(dataset)
out = []
for e in range(3):
    epoch.assign(e)
    plain = [b[0].numpy().ravel().tolist() for b in dataset]
    split = [sum((t.numpy().ravel().tolist() for t in strategy.experimental_local_results(b[0])), [])
             for b in distributed]
    out.append([plain, split])
print(json.dumps(out))
"""


@pytest.mark.slow
def test_the_epoch_order_variable_survives_mirroring():
    """Each epoch's order comes from a plain tf.Variable read when the epoch's iterator starts; the
    strategy re-creates the dataset per replica, and must still see each epoch's value."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", EPOCH_ORDER], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    epochs = json.loads(done.stdout.strip().splitlines()[-1])
    for plain, split in epochs:
        assert plain == split  # the two replicas' halves of each batch, in order, are the one-device batch
    orders = [sum(plain, []) for plain, _ in epochs]
    assert all(sorted(o) == list(range(21)) for o in orders) and len({tuple(o) for o in orders}) == 3


@pytest.mark.slow
def test_a_mirrored_run_killed_mid_epoch_resumes_to_the_same_result(digits_config, tmp_path):
    reference, run = tmp_path / "reference", tmp_path / "run"
    every = ("--set", "training.checkpoint_every_steps=10")
    assert run_process("train", digits_config, "--output", reference, "--device", "cpu:2", "--quiet",
                       *every).returncode == 0
    # Saves at steps 10, 20, 30 and the end of each 36-step epoch: the 6th is killed before its
    # progress.json, so the 5th (step 10 of epoch 2) is the point the resume must start from.
    killed = run_process("train", digits_config, "--output", run, "--device", "cpu:2", "--quiet", *every,
                         env={"MLCLI_TEST_KILL_AT": "state-before-progress:6"})
    assert killed.returncode == -signal.SIGKILL
    point, kept = saved_point(run), kept_history(run)
    assert point == {"epochs_completed": 1, "step": 10} and len(kept) == 2
    done = run_process("train", "--resume", run, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["distribute"]["replicas"] == 2
    assert_resumed(run, point, kept, done.stderr)
    assert _history(run) == _history(reference)


@pytest.mark.slow
def test_distribute_none_on_two_devices_uses_one(digits_config, one_device_run, tmp_path):
    run = tmp_path / "run"
    done = run_process("train", digits_config, "--output", run, "--device", "cpu:2", "--json",
                       "--set", "runtime.distribute=none")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["distribute"]["replicas"] == 1
    assert "training on one device (/cpu:0) of the 2 chosen" in done.stderr
    assert _history(run)[0]["loss"] == pytest.approx(_history(one_device_run)[0]["loss"], rel=FIRST_EPOCH_RTOL)


# ---- several machines: MultiWorkerMirroredStrategy from TF_CONFIG ---------------------------------

def _free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("localhost", 0))
        sockets.append(sock)
    ports = [s.getsockname()[1] for s in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _worker(args: list, tf_config: str, tmp: Path, env: dict | None = None) -> subprocess.Popen:
    env = dict(os.environ, TF_CONFIG=tf_config, TMPDIR=str(tmp), **(env or {}))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-m", "mlcli", *map(str, args)], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# The uninterrupted two-worker run is also the reference of the recovery test below:
# deterministic, saving every 12 of an epoch's 36 steps, a lost peer noticed within 10 s.
CLUSTER_SETS = ("--set", "runtime.deterministic=true", "--set", "training.checkpoint_every_steps=12",
                "--set", "runtime.peer_timeout=10")


@pytest.fixture(scope="module")
def two_worker_run(digits_config, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("two-workers")
    run = tmp_path / "run"
    ports = _free_ports(2)
    temps = [tmp_path / "tmp0", tmp_path / "tmp1"]
    for temp in temps:
        temp.mkdir()
    args = ["train", digits_config, "--output", run, "--json", *CLUSTER_SETS]
    workers = [_worker(args, _tf_config(ports, i), temps[i]) for i in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    return run, workers, outputs, temps


@pytest.mark.slow
@pytest.mark.multiworker
def test_two_workers_on_loopback_match_one_process(two_worker_run, one_device_run):
    run, workers, outputs, temps = two_worker_run
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err
        _no_traceback(err)
    chief, other = (json.loads(out) for out, _ in outputs)
    assert chief["distribute"]["strategy"] == "MultiWorkerMirroredStrategy"
    assert chief["distribute"]["replicas"] == 2 and chief["distribute"]["workers"] == 2
    assert chief["distribute"]["chief"] is True and other["distribute"]["chief"] is False
    assert other["run_dir"] == chief["run_dir"] == str(run)
    assert "worker 1 of 2 workers: the chief writes the run directory" in outputs[1][1]
    assert other["metrics"] == pytest.approx(chief["metrics"])  # every worker logs the all-reduced values
    for name in ("config.yaml", "model.keras", "best.keras", "labels.json", "history.csv", "metrics.json",
                 "run.json", "state/progress.json"):
        assert (run / name).is_file(), name
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "completed" and manifest["distribute"]["task"] == {"type": "worker", "index": 0}
    assert list(temps[1].iterdir()) == []  # the other worker's temporary run directory is gone
    _assert_close_runs(run, one_device_run)


@pytest.mark.slow
@pytest.mark.multiworker
def test_a_worker_whose_peer_never_comes_fails_in_bounded_time(digits_config, tmp_path):
    ports = _free_ports(2)
    started = time.monotonic()
    worker = _worker(["train", digits_config, "--output", tmp_path / "run", "--set", "runtime.cluster_timeout=5"],
                     _tf_config(ports, 0), tmp_path)
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 4, err
    assert time.monotonic() - started < 90
    assert "cluster error: multi-worker run, worker 0 of 2 workers: not every worker joined within " \
           "runtime.cluster_timeout (5 s)" in err
    assert f"localhost:{ports[1]}" in err and "hint: start the same `mlcli train` command" in err
    _no_traceback(err)
    assert not (tmp_path / "run").exists()


def _wait_for_point(run: Path, process: subprocess.Popen, epochs: int, step: int, timeout: float = 600) -> None:
    """Until the chief's saved resume point has reached (epochs, step)."""
    deadline = time.monotonic() + timeout
    while (saved_point(run)["epochs_completed"], saved_point(run)["step"]) < (epochs, step):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the run never reached its resume point"
        time.sleep(0.05)


def _stopped_survivor(survivor: subprocess.Popen, lost: subprocess.Popen, killed_at: float | None = None):
    """The survivor's (stderr, seconds from the peer's death to the survivor's exit)."""
    if killed_at is None:
        lost.wait(timeout=600)
        killed_at = time.monotonic()
    _, err = survivor.communicate(timeout=600)
    return err, time.monotonic() - killed_at


def _weights(run: Path) -> list:
    import h5py  # deferred: only this test reads a .keras archive's weights

    arrays: list = []
    with zipfile.ZipFile(run / "model.keras") as archive, \
            h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
        weights.visititems(lambda name, item: arrays.append((name, item[()])) if isinstance(item, h5py.Dataset)
                           else None)
    return arrays


def _nothing_half_written(run: Path) -> None:
    leftovers = [p.name for p in run.rglob(".*") if p.name != ".lock"]
    assert leftovers == [], leftovers  # every write is a temporary file renamed into place
    progress = json.loads((run / "state" / "progress.json").read_text())
    assert (run / "state" / progress["arrays"]).is_file()
    assert not (run / "model.keras").exists()  # only a completed run has its final model


PEER_TIMEOUT = 10
LOST_BOUND = PEER_TIMEOUT + 20  # s from a worker's death to every survivor's exit (measured: 5.8 s)


@pytest.mark.slow
@pytest.mark.multiworker
def test_a_lost_worker_stops_the_others_and_the_restarted_cluster_ends_as_if_never_stopped(
        digits_config, two_worker_run, tmp_path):
    """Two workers; 36 steps an epoch, saved every 12. Worker 1 is killed in epoch 2; the restarted
    cluster's chief kills itself in the middle of a save; the cluster restarted again finishes the run:
    the same history and, with runtime.deterministic, the same weights as the uninterrupted run."""
    reference = two_worker_run[0]
    run = tmp_path / "run"
    temps = [tmp_path / "tmp0", tmp_path / "tmp1"]
    for temp in temps:
        temp.mkdir()
    args = ["train", digits_config, "--output", run, *CLUSTER_SETS]

    # 1. worker 1 lost during epoch 2: the chief stops with exit 4, naming it, and run.json says interrupted
    ports = _free_ports(2)
    workers = [_worker(args, _tf_config(ports, i), temps[i]) for i in range(2)]
    _wait_for_point(run, workers[0], 1, 12)
    workers[1].kill()
    err, seconds = _stopped_survivor(workers[0], workers[1], killed_at=time.monotonic())
    assert workers[0].returncode == 4, err
    assert seconds < LOST_BOUND, err
    stopped = f"worker 1 (localhost:{ports[1]}) stopped"
    assert f"cluster error: multi-worker run, worker 0 of 2 workers: {stopped}" in err
    assert f"hint: start every worker again, each with its own TF_CONFIG: {shlex.join(map(str, ['mlcli', *args]))} " \
           "--resume" in err
    _no_traceback(err)
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["interrupted"]["reason"] == "lost worker"
    assert stopped in manifest["interrupted"]["message"]
    _nothing_half_written(run)
    point, kept = saved_point(run), kept_history(run)
    assert point["epochs_completed"] == 1 and point["step"] in (12, 24) and len(kept) == 2

    # 2. both restarted with --resume; the chief (the coordination leader) dies while saving the end of
    # epoch 2 (its state written, not yet its progress.json): worker 1 stops with exit 4, naming it
    left = set(temps[1].iterdir())  # the killed worker 1's scratch directory: a SIGKILL leaves it
    ports = _free_ports(2)
    workers = [_worker([*args, "--resume"], _tf_config(ports, i), temps[i],
                       env={"MLCLI_TEST_KILL_AT": f"state-before-progress:{2 if point['step'] == 12 else 1}"}
                       if i == 0 else None) for i in range(2)]
    err, seconds = _stopped_survivor(workers[1], workers[0])
    assert workers[0].returncode == -signal.SIGKILL
    assert workers[1].returncode == 4, err
    assert seconds < LOST_BOUND, err
    assert f"worker 0 (localhost:{ports[0]}, the chief) stopped" in err and "--resume" in err
    _no_traceback(err)
    _nothing_half_written(run)
    assert saved_point(run) == {"epochs_completed": 1, "step": 24} and kept_history(run) == kept
    assert set(temps[1].iterdir()) == left  # worker 1 stopped cleanly: its scratch directory is gone

    # 3. restarted again (the chief as `--resume DIR`, worker 1 with its first command and --resume):
    # the run completes from where the chief's last save left it, on both workers
    ports = _free_ports(2)
    workers = [_worker(["train", "--resume", run, "--json"], _tf_config(ports, 0), temps[0]),
               _worker([*args, "--resume", "--json"], _tf_config(ports, 1), temps[1])]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err
        _no_traceback(err)
        assert "resuming after 1 epoch(s) and 24 step(s) of the next" in err
    assert_resumed(run, {"epochs_completed": 1, "step": 24}, kept, outputs[0][1])
    assert json.loads(outputs[1][0])["epochs_completed"] == 3
    resumed, uninterrupted = _history(run), _history(reference)
    assert [row["epoch"] for row in resumed] == [1, 2, 3]  # no gap, no duplicate
    assert resumed[0] == uninterrupted[0] and resumed[2] == uninterrupted[2]  # bit for bit
    # Epoch 2 was resumed mid-way: its running training totals, summed across the replicas when saved,
    # are split back between them, so the epoch's mean loss is rounded in another order.
    assert resumed[1] == pytest.approx(uninterrupted[1], rel=RESUMED_EPOCH_RTOL, abs=0)
    ours, theirs = _weights(run), _weights(reference)
    assert [name for name, _ in ours] == [name for name, _ in theirs]
    for (name, mine), (_, expected) in zip(ours, theirs):
        assert np.array_equal(mine, expected), name  # exact: the resume restores every bit


@pytest.mark.slow
@pytest.mark.multiworker
@pytest.mark.parametrize("late", [0, 3])
def test_resuming_on_replicas_that_cannot_split_the_global_batch_is_exit_2_on_every_worker(tmp_path, late):
    """A run trained in one process with a global batch of 33 rows, stopped after its first epoch, then
    resumed on two workers: 33 rows do not split in two, so the chief refuses, and so does worker 1 —
    also when worker 1 comes to read the chief's answer `late` seconds after the chief has given it (the
    chief's process holds the cluster's key-value store: it waits until the answer is read)."""
    run = tmp_path / "run"
    args = ["train", REPO / "configs" / "tiny.yaml", "--output", run, "--set", "training.batch_size=33"]
    stopped = run_process(*args, "--quiet", env={"MLCLI_TEST_KILL_AT": "state-before-progress:2"})
    assert stopped.returncode == -signal.SIGKILL and saved_point(run) == {"epochs_completed": 1, "step": 0}
    ports = _free_ports(2)
    slow = tmp_path / "slow"  # worker 1 only: a sitecustomize that delays its reading of the chief's answer
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(
        "import time\nfrom mlcli.training import cluster\n_share = cluster.share_point\n"
        f"def share_point(*args, **kwargs):\n    time.sleep({late})\n    return _share(*args, **kwargs)\n"
        "cluster.share_point = share_point\n")
    workers = [_worker([*args, "--resume"], _tf_config(ports, i), tmp_path,
                       env={"PYTHONPATH": str(slow)} if i == 1 else None) for i in range(2)]
    errors = [w.communicate(timeout=600)[1] for w in workers]
    refusal = (f"{run} was trained with a global batch of 33 rows on 1 replica; a resumed run keeps its global "
               "batch, and 2 replicas cannot split 33 rows evenly")
    assert workers[0].returncode == 2 and f"usage error: {refusal}" in errors[0], errors[0]
    assert workers[1].returncode == 2 and f"usage error: the chief refused to continue the run: {refusal}" \
        in errors[1], errors[1]
    for err in errors:
        assert "hint: resume it on a number of replicas that divides 33 (1, 3, 11, 33), or start a new run" in err
        _no_traceback(err)
    assert json.loads((run / "run.json").read_text())["status"] == "running"  # as the kill left it: untouched
    assert saved_point(run) == {"epochs_completed": 1, "step": 0}


@pytest.mark.parametrize("tf_config, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["localhost:1"]}}', 'TF_CONFIG needs a "cluster" object and a "task" object'),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 3}}', "is not in the cluster"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "worker", "index": 0}}', "ps task(s)"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', '"host:port" addresses'),
])
def test_a_bad_tf_config_is_exit_2_before_any_work(tf_config, message, tmp_path):
    ran = run_cli("train", REPO / "configs" / "tiny.yaml", "--output", tmp_path / "run",
                  env={"TF_CONFIG": tf_config})
    assert ran.exit_code == 2, ran
    assert message in ran.stderr
    _no_traceback(ran.stderr)
    assert not (tmp_path / "run").exists()


def test_multi_worker_without_tf_config_is_exit_2(tmp_path):
    ran = run_cli("train", REPO / "configs" / "tiny.yaml", "--output", tmp_path / "run",
                  "--set", "runtime.distribute=multi_worker", env={"TF_CONFIG": ""})
    assert ran.exit_code == 2, ran
    assert "runtime.distribute is multi_worker but the TF_CONFIG environment variable is not set" in ran.stderr


def test_a_resume_on_another_number_of_replicas_keeps_the_global_batch_or_is_refused(tmp_path):
    from mlcli.errors import UsageError
    from mlcli.training.cluster import kept_batch

    saved = {"replicas": 2, "workers": 2, "global_batch_size": 32}
    assert kept_batch(tmp_path, saved, 2, 32) == (32, None)  # the same cluster: nothing to say
    assert kept_batch(tmp_path, None, 3, 33) == (33, None)  # a run that recorded no distribution
    batch, note = kept_batch(tmp_path, saved, 4, 32)  # 4 workers: 8 rows each, the same 32-row steps
    assert batch == 32 and note == ("resumed on 4 replicas instead of 2: the global batch of 32 rows is kept "
                                    "(8 rows per replica)")
    assert kept_batch(tmp_path, saved, 1, 32)[0] == 32  # one process continues a two-worker run
    with pytest.raises(UsageError) as refused:
        kept_batch(tmp_path, saved, 3, 33)  # 3 replicas round 32 up to 33: refused, not silently changed
    assert refused.value.exit_code == 2
    assert refused.value.message == (f"{tmp_path} was trained with a global batch of 32 rows on 2 replicas on 2 "
                                     "workers; a resumed run keeps its global batch, and 3 replicas cannot split "
                                     "32 rows evenly")
    assert refused.value.hint == "resume it on a number of replicas that divides 32 (1, 2, 4, 8, 16, 32), or " \
                                 "start a new run"


def test_tf_config_roles():
    from mlcli.training.distribute import cluster_role

    two = {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}
    role = cluster_role("auto", {"TF_CONFIG": json.dumps(two)})
    assert role.is_chief and role.workers == 2 and role.peers() == ["b:1"]
    assert role.leader == "/job:worker/replica:0/task:0"
    other = cluster_role("multi_worker", {"TF_CONFIG": json.dumps({**two, "task": {"type": "worker", "index": 1}})})
    assert not other.is_chief
    with_chief = {"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}
    assert not cluster_role("auto", {"TF_CONFIG": json.dumps(with_chief)}).is_chief
    chief = cluster_role("auto", {"TF_CONFIG": json.dumps({**with_chief, "task": {"type": "chief", "index": 0}})})
    assert chief.is_chief and chief.workers == 2 and chief.leader == "/job:chief/replica:0/task:0"
    assert cluster_role("auto", {}) is None
    assert cluster_role("mirrored", {"TF_CONFIG": json.dumps(two)}) is None
    assert cluster_role("none", {"TF_CONFIG": json.dumps(two)}) is None


# ---- data larger than memory: data.stream ---------------------------------------------------------

def _digits_table():
    import pyarrow.csv as pacsv

    from mlcli.data.sources import builtin_path

    return pacsv.read_csv(str(builtin_path("digits", "train")))


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """The digits training rows as three Parquet shards (small row groups) and as one CSV."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("shards")
    table = _digits_table()
    for index, start in enumerate(range(0, table.num_rows, 500)):
        pq.write_table(table.slice(start, 500), folder / f"part-{index}.parquet", row_group_size=96)
    pacsv.write_csv(table, folder / "digits.csv")
    return folder


STREAMED = """
name: streamed
seed: 5
data: {{train: {train}, validation: {validation}, test: builtin:digits/test, shuffle: {shuffle}, stream: {stream}}}
model:
  layers:
    - {{type: Dense, units: 32, activation: relu}}
    - {{type: Dropout, rate: {dropout}}}
    - {{type: Dense, units: 10, activation: softmax}}
optimizer: {{type: adam, learning_rate: 0.003}}
training: {{epochs: 3, batch_size: 32, checkpoint_every_steps: 9}}
runtime: {{deterministic: true}}
"""


def _streamed(folder: Path, name: str, *, train: str, stream, shuffle: bool = False, validation="null",
              dropout: float = 0.1) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(STREAMED.format(train=train, stream=str(stream).lower(), shuffle=str(shuffle).lower(),
                                    validation=validation, dropout=dropout))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("train", ["part-*.parquet", "digits.csv"])
def test_streamed_and_in_memory_runs_are_the_same(shards, train, tmp_path):
    runs = {}
    for stream in (True, False):
        config = _streamed(shards, f"eq-{stream}-{train[:5]}", train=train, stream=stream)
        runs[stream] = tmp_path / f"run-{stream}"
        ran = run_cli("train", config, "--output", runs[stream], "--json")
        assert ran.exit_code == 0, ran
    streamed, loaded = (json.loads((runs[s] / "run.json").read_text()) for s in (True, False))
    assert streamed["data"]["train"][0]["streamed"] is True and "streamed" not in loaded["data"]["train"][0]
    assert streamed["rows"] == loaded["rows"] == {"train": 1438, "test": 359}
    assert [f["rows"] for f in streamed["data"]["train"][0]["files"]] == \
           ([500, 500, 438] if train.endswith(".parquet") else [1438])
    for ours, theirs in zip(_history(runs[True]), _history(runs[False])):
        assert ours == pytest.approx(theirs, rel=STREAM_RTOL)
    metrics = [json.loads((runs[s] / "metrics.json").read_text()) for s in (True, False)]
    assert metrics[0] == pytest.approx(metrics[1], rel=STREAM_RTOL)
    assert (runs[True] / "plots" / "curves.png").is_file()


def test_the_streaming_statistics_and_split_need_no_data_in_memory():
    from mlcli.data.stream import Moments, batches, held_out
    from mlcli.model.normalize import feature_moments

    rng = np.random.default_rng(0)
    x = rng.normal(3, 2, size=(10_001, 5)).astype(np.float32)
    moments = Moments()
    for start in range(0, len(x), 777):
        moments.add(x[start:start + 777])
    for kind in ("standard", "minmax"):
        for ours, theirs in zip(moments.moments(kind), feature_moments(kind, x)):
            np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    rows = np.arange(200_000, dtype=np.uint64)
    held = held_out(rows, 42, 0.2)
    assert abs(held.mean() - 0.2) < 0.005
    assert np.array_equal(held, held_out(rows, 42, 0.2)) and not np.array_equal(held, held_out(rows, 43, 0.2))
    assert np.array_equal(held[1000:2000], held_out(rows[1000:2000], 42, 0.2))  # a row's fate is its own
    y = np.arange(len(x))
    chunks = [(x[s:s + 777], y[s:s + 777]) for s in range(0, len(x), 777)]
    in_order = list(batches(iter(chunks), 64, None))
    assert [len(b[1]) for b in in_order] == [64] * 156 + [17]
    assert np.array_equal(np.concatenate([b[1] for b in in_order]), y)
    shuffled = list(batches(iter(chunks), 64, np.random.default_rng(1), window=2048))
    assert [len(b[1]) for b in shuffled] == [64] * 156 + [17]
    seen = np.concatenate([b[1] for b in shuffled])
    assert sorted(seen.tolist()) == y.tolist() and not np.array_equal(seen, y)


@pytest.mark.slow
def test_a_streamed_run_with_a_hash_split_and_shuffling(shards, tmp_path):
    from mlcli.data.stream import held_out

    config = _streamed(shards, "split", train="part-*.parquet", stream=True, shuffle=True, validation=0.2)
    run = tmp_path / "run"
    ran = run_cli("train", config, "--output", run, "--json")
    assert ran.exit_code == 0, ran
    held = int(held_out(np.arange(1438, dtype=np.uint64), 5, 0.2).sum())
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["rows"] == {"train": 1438 - held, "validation": held, "test": 359}
    assert "streamed from disk" in ran.stderr and "held out by a hash of each row's number" in ran.stderr
    assert json.loads(ran.stdout)["metrics"]["test_accuracy"] > 0.85
    again = tmp_path / "again"  # the split and every epoch's order come from the seed alone
    assert run_cli("train", config, "--output", again).exit_code == 0
    assert _history(again) == _history(run)


def test_deep_validation_of_streamed_data_scans_it_as_train_would(shards, tmp_path):
    from mlcli.data.stream import held_out

    config = _streamed(shards, "deep", train="part-*.parquet", stream=True, validation=0.2)
    ran = run_cli("validate", config, "--deep")
    assert ran.exit_code == 0, ran
    held = int(held_out(np.arange(1438, dtype=np.uint64), 5, 0.2).sum())
    assert f"rows (streamed from disk): train {1438 - held}, validation {held}, test 359" in ran.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_evaluate_on_a_streamed_run_without_test_data_finds_its_validation_rows(shards, tmp_path):
    config = _streamed(shards, "noeval", train="part-*.parquet", stream=True, validation=0.2)
    run = tmp_path / "run"
    assert run_cli("train", config, "--output", run, "--quiet", "--set", "data.test=null",
                   "--set", "training.epochs=1").exit_code == 0
    ran = run_cli("evaluate", run, "--json")
    assert ran.exit_code == 0, ran
    _no_traceback(ran.stderr)
    document = json.loads(ran.stdout)
    trained = json.loads((run / "metrics.json").read_text())
    assert document["source"] == "data.validation"
    assert document["samples"] == json.loads((run / "run.json").read_text())["rows"]["validation"]
    # The same rows and the same final weights as training's last validation pass.
    assert document["metrics"]["loss"] == pytest.approx(trained["val_loss"], rel=1e-5)
    assert document["metrics"]["accuracy"] == pytest.approx(trained["val_accuracy"], abs=1e-6)
    ran = run_cli("evaluate", run, "--data", shards / "digits.csv", "--json")
    assert ran.exit_code == 0, ran
    assert json.loads(ran.stdout)["samples"] == 1438


@pytest.mark.slow
def test_a_streamed_run_killed_mid_epoch_resumes_bit_identical(shards, tmp_path):
    config = _streamed(shards, "resume", train="part-*.parquet", stream=True, shuffle=True, validation=0.2)
    reference, run = tmp_path / "reference", tmp_path / "run"
    assert run_process("train", config, "--output", reference, "--quiet").returncode == 0
    # Saves at steps 9, 18, 27, 36 and the end of each 37-step epoch: the 7th is killed before its
    # progress.json, so the resume starts from the 6th, mid-way through the second epoch.
    killed = run_process("train", config, "--output", run, "--quiet",
                         env={"MLCLI_TEST_KILL_AT": "state-before-progress:7"})
    assert killed.returncode == -signal.SIGKILL
    point, kept = saved_point(run), kept_history(run)
    assert point == {"epochs_completed": 1, "step": 9} and len(kept) == 2
    done = run_process("train", "--resume", run)
    assert done.returncode == 0, done.stderr
    assert_resumed(run, point, kept, done.stderr)
    assert _history(run) == _history(reference)
    import keras

    ours, theirs = (keras.saving.load_model(r / "model.keras").get_weights() for r in (run, reference))
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))


def test_auto_streams_above_the_size_threshold(shards, tmp_path, monkeypatch):
    from mlcli.data import load

    monkeypatch.setattr(load, "STREAM_ABOVE_BYTES", 1000)
    config = _streamed(shards, "auto", train="digits.csv", stream="auto")
    ran = run_cli("train", config, "--output", tmp_path / "run", "--set", "training.epochs=1")
    assert ran.exit_code == 0, ran
    assert "(more than 1 GiB): streaming it from disk in chunks (data.stream: auto" in ran.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["data"]["train"][0]["streamed"] is True
    monkeypatch.setattr(load, "STREAM_ABOVE_BYTES", 1 << 30)
    ran = run_cli("train", config, "--output", tmp_path / "small", "--set", "training.epochs=1")
    assert ran.exit_code == 0 and "streamed" not in json.loads((tmp_path / "small" / "run.json").read_text())["data"]["train"][0]


@pytest.mark.slow
def test_streamed_data_on_two_mirrored_replicas(shards, tmp_path):
    config = _streamed(shards, "mirrored", train="part-*.parquet", stream=True, dropout=0.0)
    runs = {}
    for device in ("cpu", "cpu:2"):
        runs[device] = tmp_path / device.replace(":", "")
        done = run_process("train", config, "--output", runs[device], "--device", device, "--quiet",
                           "--set", "runtime.deterministic=false")
        assert done.returncode == 0, done.stderr
    _assert_close_runs(runs["cpu:2"], runs["cpu"])


# ---- streamed data errors: named by file, column and row, before any training ----------------------

def _write_csv(path: Path, rows: int, bad_row: int | None = None, value: str = "oops") -> None:
    lines = ["a,b,label"]
    for i in range(rows):
        lines.append(f"{value if i + 1 == bad_row else i * 0.5},{i % 7},{i % 3}")
    path.write_text("\n".join(lines) + "\n")


def _stream_config(folder: Path, train: str, **data) -> Path:
    extra = "".join(f", {k}: {v}" for k, v in data.items())
    path = folder / "stream.yaml"
    path.write_text(f"data: {{train: {train}, stream: true, validation: null{extra}}}\n"
                    "model: {layers: [{type: Dense, units: 3, activation: softmax}]}\ntraining: {epochs: 1}\n")
    return path


def test_a_bad_value_deep_in_a_streamed_csv_is_named_by_row(tmp_path):
    _write_csv(tmp_path / "big.csv", 60_000, bad_row=55_555)
    ran = run_cli("train", _stream_config(tmp_path, "big.csv"), "--output", tmp_path / "run")
    assert ran.exit_code == 3, ran
    assert "column 'a', row 55555: 'oops' is not a number" in ran.stderr
    _no_traceback(ran.stderr)
    assert not (tmp_path / "run").exists()


def test_a_nan_in_a_later_shard_is_named_by_shard_and_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for index in range(2):
        a = np.arange(100, dtype=np.float64)
        if index == 1:
            a[41] = np.nan
        pq.write_table(pa.table({"a": a, "b": a * 2, "label": np.arange(100) % 3}), tmp_path / f"p-{index}.parquet")
    ran = run_cli("train", _stream_config(tmp_path, "p-*.parquet"), "--output", tmp_path / "run")
    assert ran.exit_code == 3, ran
    assert "p-1.parquet: column 'a', row 42:" in ran.stderr
    _no_traceback(ran.stderr)


def test_shards_with_different_columns_and_a_missing_label_are_data_errors(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1.0, 2.0], "label": [0, 1]}), tmp_path / "s-0.parquet")
    pq.write_table(pa.table({"a": [1.0, 2.0], "c": [0, 1]}), tmp_path / "s-1.parquet")
    ran = run_cli("train", _stream_config(tmp_path, "s-*.parquet"), "--output", tmp_path / "run")
    assert ran.exit_code == 3, ran
    assert "s-1.parquet: columns differ from" in ran.stderr and "every shard needs the same columns" in ran.stderr
    ran = run_cli("train", _stream_config(tmp_path, "s-1.parquet"), "--output", tmp_path / "run")
    assert ran.exit_code == 3, ran
    assert "label column 'label' not found — the columns are: a, c" in ran.stderr
    _no_traceback(ran.stderr)


def test_an_unknown_label_in_a_streamed_test_file_is_a_data_error(tmp_path):
    _write_csv(tmp_path / "train.csv", 50)
    (tmp_path / "test.csv").write_text("a,b,label\n1,2,0\n3,4,9\n")
    ran = run_cli("train", _stream_config(tmp_path, "train.csv", test="test.csv"), "--output", tmp_path / "run")
    assert ran.exit_code == 3, ran
    assert "data.test: " in ran.stderr and "test.csv: row 2: label 9 was not among the training classes (0, 1, 2)" \
        in ran.stderr
    _no_traceback(ran.stderr)


def test_npz_cannot_be_streamed(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]))
    ran = run_cli("train", _stream_config(tmp_path, "d.npz"), "--output", tmp_path / "run")
    assert ran.exit_code == 3, ran
    assert "data.stream reads CSV or Parquet in chunks; an .npz file is read whole" in ran.stderr
    assert "set data.stream: false" in ran.stderr
    _no_traceback(ran.stderr)
