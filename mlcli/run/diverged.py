"""A run whose loss became NaN or inf: what to suggest instead of --resume.

--resume continues from the last saved state with the same config (a changed learning rate is refused),
so it takes the same steps again and diverges again. What can work is a new run with a lower learning
rate; this module words that as a command the user can paste.
"""

from __future__ import annotations

from pathlib import Path

from mlcli.config.yamlio import read_yaml_file
from mlcli.errors import ConfigError
from mlcli.run.files import CONFIG
from mlcli.run.manifest import read_manifest


def restart_hint(run_dir: Path) -> str:
    """`--resume` would diverge again: a new run with a tenth of the learning rate, as a command."""
    setting = _lower_rate(run_dir)
    if read_manifest(run_dir).get("parent"):
        started = f"start a new finetune run from the same parent with --set {setting}"
    else:
        started = f"start a new run with a lower learning rate: mlcli train {run_dir / CONFIG} --output " \
                  f"{run_dir}-retry --set {setting}"
    return (f"--resume would repeat the same steps from the same state and diverge again; {started} "
            "(or check the data for extreme values, or use data.normalize: standard)")


def _lower_rate(run_dir: Path) -> str:
    """`optimizer.learning_rate=X` with a tenth of the run's rate (a schedule's initial rate), when known."""
    try:
        config, _ = read_yaml_file(run_dir / CONFIG)
        rate = config["optimizer"]["learning_rate"]
    except (ConfigError, KeyError, TypeError):
        rate = None
    key = "optimizer.learning_rate"
    if isinstance(rate, dict):
        key, rate = f"{key}.initial_learning_rate", rate.get("initial_learning_rate")
    if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0:
        return f"{key}={rate / 10:g}"
    return f"{key}=<lower>"
