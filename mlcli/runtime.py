"""TensorFlow import (lazy, quiet), devices, precision, distribution and determinism."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass

from mlcli.errors import DeviceError

_verbose = False


def set_verbose(verbose: bool) -> None:
    global _verbose
    _verbose = verbose


@contextlib.contextmanager
def quiet_native_stderr():
    """Hide what TensorFlow's C++ side writes to fd 2 (start-up banners, CUDA probing).

    The text is kept and shown if the block fails, so a broken install is still explained.
    """
    if _verbose:
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
    if not _verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        warnings.filterwarnings("ignore", module="tensorflow")
        warnings.filterwarnings("ignore", module="keras")
    with quiet_native_stderr():
        import tensorflow as tf

        if not _verbose:
            tf.get_logger().setLevel(logging.ERROR)
            logging.getLogger("absl").setLevel(logging.ERROR)
    return tf


@dataclass(frozen=True)
class DeviceChoice:
    kind: str  # "cpu" or "gpu"
    devices: tuple[str, ...]  # e.g. ("/physical_device:GPU:0",) or ("CPU",)

    def describe(self) -> str:
        if self.kind == "cpu":
            return "cpu"
        return "gpu:" + ",".join(d.rsplit(":", 1)[-1] for d in self.devices)


def visible_gpus() -> list:
    tf = import_tensorflow()
    with quiet_native_stderr():
        return tf.config.list_physical_devices("GPU")


def select_device(requested: str) -> DeviceChoice:
    """Apply runtime.device before any tensor exists: hide unwanted GPUs, grow memory on the rest."""
    tf = import_tensorflow()
    gpus = visible_gpus()
    if requested == "cpu":
        with contextlib.suppress(RuntimeError):
            tf.config.set_visible_devices([], "GPU")
        return DeviceChoice("cpu", ("CPU",))
    if requested.startswith("gpu"):
        if not gpus:
            from mlcli.doctor import gpu_diagnosis

            raise DeviceError(
                f"runtime.device is {requested!r} but TensorFlow sees no usable GPU. {gpu_diagnosis()}",
                hint="use --device cpu (or auto), or run `mlcli doctor` for details",
            )
        if ":" in requested:
            wanted = [int(i) for i in requested.split(":", 1)[1].split(",")]
            missing = [i for i in wanted if i >= len(gpus)]
            if missing:
                raise DeviceError(
                    f"GPU(s) {missing} requested but TensorFlow sees {len(gpus)} GPU(s) (0 to {len(gpus) - 1})",
                    hint="run `mlcli doctor` to list the GPUs",
                )
            gpus = [gpus[i] for i in wanted]
    if not gpus:
        return DeviceChoice("cpu", ("CPU",))
    with contextlib.suppress(RuntimeError):  # already initialised: settings are fixed for this process
        tf.config.set_visible_devices(gpus, "GPU")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)  # two jobs can share a card
    return DeviceChoice("gpu", tuple(g.name for g in gpus))


def choose_precision(requested: str, device: DeviceChoice) -> str:
    """auto: bfloat16 on compute capability >= 8.0, float16 on 7.x, float32 otherwise."""
    if requested != "auto":
        return requested
    if device.kind != "gpu":
        return "float32"
    tf = import_tensorflow()
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(details.get("compute_capability", (0, 0)))
    lowest = min(capabilities) if capabilities else (0, 0)
    if lowest >= (8, 0):
        return "mixed_bfloat16"
    if lowest >= (7, 0):
        return "mixed_float16"
    return "float32"


def seed_everything(seed: int, deterministic: bool) -> None:
    tf = import_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
