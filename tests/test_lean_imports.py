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


@pytest.mark.parametrize("chosen,expected", [(None, "system"), ("jemalloc", "jemalloc")])
def test_arrow_uses_the_system_allocator_unless_the_user_chose_one(chosen, expected):
    """mlcli picks Arrow's allocator before pyarrow is imported (mlcli/__init__.py): the system one,
    or what ARROW_DEFAULT_MEMORY_POOL names."""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if chosen:
        env["ARROW_DEFAULT_MEMORY_POOL"] = chosen
    done = subprocess.run([sys.executable, "-c", "import mlcli.cli, pyarrow; print(pyarrow.default_memory_pool().backend_name)"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == expected
