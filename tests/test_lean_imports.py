"""`mlcli train` does not load what Keras imports only for features mlcli never uses (scikit-learn,
pandas, scipy, matplotlib's pyplot: about 155 MB of a run's memory, docs/performance.md), and those
packages still import normally afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import CONFIGS, REPO

WATCHED = ("sklearn", "pandas", "scipy", "matplotlib.pyplot", "matplotlib", "tensorflow", "keras")
# mlcli's main runs the atexit handlers before its os._exit: this one reports what the run loaded.
SCRIPT = f"""
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(m for m in {WATCHED!r} if m in sys.modules)), file=sys.stderr))
sys.argv = ["mlcli"] + sys.argv[1:]
from mlcli.cli import main
main()
"""


@pytest.mark.slow
def test_a_training_run_never_imports_kerass_optional_extras(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, "train", str(CONFIGS / "tiny.yaml"), "--output",
                           str(tmp_path / "run"), "--quiet"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    # TensorFlow and Keras ran, matplotlib drew the run's plots; none of Keras's optional extras came in.
    assert loaded == ["keras", "matplotlib", "tensorflow"]
    assert (tmp_path / "run" / "model.keras").is_file() and (tmp_path / "run" / "plots").is_dir()


def test_the_hidden_packages_import_normally_once_tensorflow_is_in():
    from mlcli import runtime

    runtime.import_tensorflow()
    import pandas

    assert pandas.DataFrame({"a": [1]}).shape == (1, 1)
