"""mlcli's import of TensorFlow runs no garbage collection and freezes what it made
(docs/performance.md, "Start-up and overhead"): a fresh process, as a user's command starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).absolute().parent.parent

PROBE = """
import gc, json
collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info["generation"]))
from mlcli import runtime
before = len(collections)
runtime.import_tensorflow()
print(json.dumps({"collections": collections[before:], "frozen": gc.get_freeze_count(), "enabled": gc.isenabled()}))
"""


@pytest.mark.slow
def test_importing_tensorflow_runs_no_collection_and_freezes_what_it_made():
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["collections"] == []
    assert found["frozen"] > 100_000  # TensorFlow and Keras: several hundred thousand objects
    assert found["enabled"] is True  # collection is back on for the run itself
