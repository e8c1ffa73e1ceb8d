"""`mlcli doctor`: what this machine offers mlcli, and why a GPU is not used when one exists."""

from __future__ import annotations

import platform
import shutil
import subprocess

from mlcli import __version__


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
    from mlcli.runtime import import_tensorflow, visible_gpus

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


def report() -> dict:
    from mlcli.runtime import import_tensorflow, visible_gpus

    tf = import_tensorflow()
    import keras

    gpus = visible_gpus()
    gpu_rows = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        gpu_rows.append({
            "name": gpu.name,
            "model": details.get("device_name"),
            "compute_capability": ".".join(map(str, details.get("compute_capability", ()))) or None,
        })
    return {
        "mlcli": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "built_with_cuda": bool(tf.test.is_built_with_cuda()),
        "gpus": gpu_rows,
        "nvidia_smi": nvidia_smi(),
        "diagnosis": gpu_diagnosis(),
    }
