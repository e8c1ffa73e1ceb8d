"""`mlcli doctor`: what this machine offers mlcli, and why a GPU is not used when one exists."""

from __future__ import annotations

import platform

from mlcli import __version__
from mlcli.runtime import gpu_diagnosis, import_tensorflow, nvidia_smi, visible_gpus


def report() -> dict:
    tf = import_tensorflow()
    import keras  # deferred: loads TensorFlow; import_tensorflow above did it quietly

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
