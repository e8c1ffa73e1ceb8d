"""TensorFlow import (lazy, quiet), devices, precision and determinism.

The device and precision choices are pure functions of what TensorFlow reports (`decide_device`,
`precision_for`), so they are tested with faked GPU lists; `select_device` applies a choice to
TensorFlow, which must happen before TensorFlow creates its first tensor.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.abc
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass

from mlcli.errors import DeviceError
from mlcli.settings import active_settings


@contextlib.contextmanager
def quiet_native_stderr():
    """Hide what TensorFlow's C++ side writes to fd 2 (start-up banners, CUDA probing).

    The text is kept and shown if the block fails, so a broken install is still explained.
    """
    if active_settings().verbose:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow():
    """Import TensorFlow (3-4 s) only when a command needs it, without its start-up noise."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    verbose = active_settings().verbose
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        warnings.filterwarnings("ignore", module="tensorflow")
        warnings.filterwarnings("ignore", module="keras")
    # The import makes well over a million objects and almost no garbage, yet each of them is
    # traversed by the several full collections it triggers: a fifth or more of the import's time
    # (docs/performance.md, "Start-up and overhead"). So no collection runs during it, and what it
    # made is then frozen (gc.freeze): later full collections skip those objects, which live as long
    # as the process anyway.
    collecting = gc.isenabled()
    gc.disable()
    try:
        with quiet_native_stderr(), _without(KERAS_EXTRAS):
            import tensorflow as tf  # deferred: 3-4 s, only for the commands that compute

            if not verbose:
                tf.get_logger().setLevel(logging.ERROR)
                logging.getLogger("absl").setLevel(logging.ERROR)
    finally:
        if collecting:
            gc.enable()
    gc.freeze()
    return tf


# What `import tensorflow` loads (through Keras) only for features mlcli never uses, and does without
# when absent: scikit-learn (Keras's sklearn wrappers; it brings scipy), pandas (DataFrames passed to
# `fit`), matplotlib (keras.visualization's pyplot galleries; mlcli's plots import matplotlib themselves
# when they draw) and scipy (tf.keras v1's sparse inputs). About 130 MB of the process's memory and a
# second of start-up (docs/performance.md, Memory). Hidden during that import only: imported later
# (optuna, a plot), each loads as usual.
KERAS_EXTRAS = ("sklearn", "pandas", "matplotlib", "scipy")


class _Hidden(importlib.abc.MetaPathFinder):
    """An import finder that says these top-level packages (and their modules) are not installed."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden while TensorFlow imports)",
                                      name=fullname)
        return None


@contextlib.contextmanager
def _without(names: tuple[str, ...]):
    """Import with `names` hidden, unless one is already loaded (then whoever imports it shares it)."""
    hidden = _Hidden(tuple(n for n in names if n not in sys.modules))
    sys.meta_path.insert(0, hidden)
    try:
        yield
    finally:
        sys.meta_path.remove(hidden)


@dataclass(frozen=True)
class DeviceChoice:
    kind: str  # "cpu" or "gpu"
    gpus: tuple[str, ...] = ()  # physical GPU names used, e.g. ("/physical_device:GPU:0",)
    cpus: int = 1  # logical CPU devices (runtime.device cpu:N splits the CPU, to test mirrored runs)

    @property
    def count(self) -> int:
        """How many devices computation can be mirrored over."""
        return len(self.gpus) if self.kind == "gpu" else self.cpus

    def describe(self) -> str:
        """What run.json and the summary say: cpu, cpu:2 (two logical CPUs), gpu:0 or gpu:0,1."""
        if self.kind == "cpu":
            return "cpu" if self.cpus == 1 else f"cpu:{self.cpus}"
        return "gpu:" + ",".join(name.rsplit(":", 1)[-1] for name in self.gpus)

    def logical_names(self) -> list[str]:
        """The devices' names once select_device has applied the choice (hidden GPUs renumber the rest)."""
        return [f"/{self.kind}:{index}" for index in range(self.count)]


def cpu_device_limit() -> int:
    """The most logical CPU devices cpu:N may ask for: the CPUs this process may run on (at least 2, so
    that a mirrored run can be tried anywhere). Each device gets its own threads: thousands of them
    leave TensorFlow stuck setting them up."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return max(2, cpus)


def cpu_count_problem(requested: str) -> str | None:
    """Why runtime.device cpu:N asks for too many devices, or None. Checked before TensorFlow starts."""
    if not requested.startswith("cpu:"):
        return None
    count, limit = int(requested.split(":", 1)[1]), cpu_device_limit()
    if count <= limit:
        return None
    return (f"cpu:{count} asks for {count} logical CPU devices but this machine has {os.cpu_count()} CPU(s) — "
            f"use at most cpu:{limit} (--device cpu:{limit})")


def visible_gpus() -> list:
    tf = import_tensorflow()
    with quiet_native_stderr():
        return tf.config.list_physical_devices("GPU")


def decide_device(requested: str, gpus: list) -> DeviceChoice:
    """runtime.device against the GPUs TensorFlow can use (`gpus`: PhysicalDevice-like, with .name).

    auto: every usable GPU, else the CPU. cpu: the CPU only. cpu:N: the CPU as N logical devices.
    gpu: every usable GPU, at least one. gpu:0,1: those GPUs (indices into TensorFlow's GPU list).
    """
    if requested == "auto":
        return DeviceChoice("gpu", tuple(g.name for g in gpus)) if gpus else DeviceChoice("cpu")
    if requested == "cpu" or requested.startswith("cpu:"):
        cpus = int(requested.split(":", 1)[1]) if ":" in requested else 1
        return DeviceChoice("cpu", cpus=cpus)
    if not gpus:
        raise DeviceError(
            f"runtime.device is {requested!r} but TensorFlow sees no usable GPU. {gpu_diagnosis()}",
            hint="use --device cpu (or auto), or run `mlcli doctor` for details",
        )
    if ":" not in requested:
        return DeviceChoice("gpu", tuple(g.name for g in gpus))
    wanted = list(dict.fromkeys(int(i) for i in requested.split(":", 1)[1].split(",")))
    missing = [i for i in wanted if i >= len(gpus)]
    if missing:
        raise DeviceError(
            f"runtime.device {requested!r}: GPU {', '.join(map(str, missing))} does not exist — TensorFlow sees "
            f"{len(gpus)} GPU(s), numbered 0 to {len(gpus) - 1}",
            hint="run `mlcli doctor` to list the GPUs",
        )
    return DeviceChoice("gpu", tuple(gpus[i].name for i in wanted))


def select_device(requested: str) -> DeviceChoice:
    """Decide runtime.device and apply it before any tensor exists: hide the GPUs not chosen, turn
    memory growth on for the rest (two jobs can share a card), split the CPU for cpu:N."""
    tf = import_tensorflow()
    gpus = visible_gpus()
    choice = decide_device(requested, gpus)
    chosen = [g for g in gpus if g.name in choice.gpus]
    with contextlib.suppress(RuntimeError):  # already initialised: settings are fixed for this process
        tf.config.set_visible_devices(chosen, "GPU")
        for gpu in chosen:
            tf.config.experimental.set_memory_growth(gpu, True)
    if choice.kind == "cpu" and choice.cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * choice.cpus)
        except RuntimeError:
            if len(tf.config.list_logical_devices("CPU")) != choice.cpus:
                raise DeviceError(
                    f"runtime.device {requested!r}: TensorFlow has already started in this process with "
                    f"{len(tf.config.list_logical_devices('CPU'))} CPU device(s); cpu:N takes effect only in a "
                    "fresh process", hint="run the command in its own process") from None
    return choice


def gpu_capabilities(device: DeviceChoice) -> list[tuple[int, int]]:
    """Compute capability (major, minor) of each chosen GPU, as TensorFlow reports it."""
    tf = import_tensorflow()
    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        if gpu.name in device.gpus:
            details = tf.config.experimental.get_device_details(gpu)
            found.append(tuple(details.get("compute_capability") or (0, 0)))
    return found


def precision_for(requested: str, device: DeviceChoice, capabilities: list[tuple[int, int]]) -> str:
    """runtime.precision. auto: mixed_bfloat16 when every chosen GPU has compute capability >= 8.0
    (Ampere and later), mixed_float16 on 7.x (Volta, Turing: float16 tensor cores), float32 on older
    GPUs and on the CPU. An explicit value is honoured as given."""
    if requested != "auto":
        return requested
    if device.kind != "gpu" or not capabilities:
        return "float32"
    lowest = min(capabilities)
    if lowest >= (8, 0):
        return "mixed_bfloat16"
    if lowest >= (7, 0):
        return "mixed_float16"
    return "float32"


def choose_precision(requested: str, device: DeviceChoice) -> str:
    needs_details = requested == "auto" and device.kind == "gpu"
    return precision_for(requested, device, gpu_capabilities(device) if needs_details else [])


def jit_compile_for(requested: bool | str, device: DeviceChoice) -> bool | str:
    """training.jit_compile, as given to model.compile. auto: Keras's "auto" on a GPU (XLA when the model
    supports it and no tf.distribute strategy is used); False on the CPU, where XLA cost 40% more CPU
    time on the seed job and saved about 3% per epoch on a 1M-parameter MLP after its compile
    (docs/performance.md, "Model scale")."""
    if requested != "auto":
        return bool(requested)
    return "auto" if device.kind == "gpu" else False


def seed_everything(seed: int) -> None:
    import_tensorflow()
    import keras  # deferred: loads TensorFlow; import_tensorflow above did it quietly

    keras.utils.set_random_seed(seed)


@contextlib.contextmanager
def run_settings(precision: str, deterministic: bool):
    """Keras's global dtype policy and TensorFlow's op determinism for one run, put back when it ends.

    Both are process-wide: without this, the first deterministic or mixed-precision run would decide
    them for every later run in the process (tests, notebooks, a sweep of runs).
    """
    import_tensorflow()
    import keras  # deferred: loads TensorFlow; import_tensorflow above did it quietly

    # deferred: TensorFlow's module; is_op_determinism_enabled is not in tf.config's public API
    from tensorflow.python.framework import config as tf_config

    policy = keras.mixed_precision.global_policy()
    was_deterministic = tf_config.is_op_determinism_enabled()
    keras.mixed_precision.set_global_policy(precision)
    (tf_config.enable_op_determinism if deterministic else tf_config.disable_op_determinism)()
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)
        (tf_config.enable_op_determinism if was_deterministic else tf_config.disable_op_determinism)()


def nvidia_smi() -> str | None:
    """nvidia-smi's GPU list, or None when it is absent or fails."""
    path = shutil.which("nvidia-smi")
    if not path:
        return None
    try:
        done = subprocess.run([path, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or done.stderr.strip() or None


def gpu_diagnosis() -> str:
    """One plain-words sentence on GPU usability."""
    tf = import_tensorflow()
    gpus = visible_gpus()
    smi = nvidia_smi()
    built_with_cuda = tf.test.is_built_with_cuda()
    if gpus:
        return f"TensorFlow can use {len(gpus)} GPU(s)."
    if smi and "GPU" in smi:
        if not built_with_cuda:
            return ("nvidia-smi sees a GPU but this TensorFlow was built without CUDA: "
                    "install `pip install 'tensorflow[and-cuda]==2.21.*'`.")
        return ("nvidia-smi sees a GPU but TensorFlow cannot use it: the CUDA/cuDNN libraries TensorFlow "
                "needs are missing or do not match the driver (run with --verbose to see TensorFlow's log).")
    if not built_with_cuda:
        return "No GPU found, and this TensorFlow build has no CUDA support (CPU only)."
    return "No NVIDIA GPU or driver found (nvidia-smi is absent or lists no GPU)."
