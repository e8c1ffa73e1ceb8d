"""`mlcli validate` (without --deep, without TensorFlow) and `mlcli train` agree: on every mutated
config of tests/corpus/agreement.yaml both exit 2 with the same problems, naming the expected keys.

The base config's data file does not exist, so train cannot reach the data with a config problem
left unreported: it would exit 3 instead of 2. Both commands run in this process (run_cli)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli

from mlcli.config.merge import apply_set
from mlcli.config.yamlio import dump_yaml

CORPUS = yaml.safe_load((Path(__file__).resolve().parent / "corpus" / "agreement.yaml").read_text())
MUTATIONS = CORPUS["mutations"]


def _config(tmp_path: Path, mutation: dict) -> Path:
    data = copy.deepcopy(CORPUS["base"])
    for assignment in mutation.get("edit", []):
        apply_set(data, {}, assignment)
    for key in mutation.get("delete", []):
        *parents, last = [int(p) if p.lstrip("-").isdigit() else p for p in key.split(".")]
        node = data
        for part in parents:
            node = node[part]
        del node[last]
    path = tmp_path / f"{mutation['id']}.yaml"
    path.write_text(dump_yaml(data))
    return path


def _sets(mutation: dict) -> list[str]:
    return [arg for assignment in mutation.get("set", []) for arg in ("--set", assignment)]


def test_the_corpus_is_large_and_covers_every_section():
    assert len(MUTATIONS) >= 60
    assert len({m["id"] for m in MUTATIONS}) == len(MUTATIONS)
    keys = {key for m in MUTATIONS for key in ([m["key"]] if isinstance(m["key"], str) else m["key"])}
    sections = {key.split(".")[0] for key in keys}
    assert sections >= {"name", "seed", "data", "model", "finetune", "optimizer", "loss", "metrics", "training",
                        "runtime"}
    assert sum(1 for m in MUTATIONS if m.get("set")) >= 10  # --set keys and values too


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m["id"] for m in MUTATIONS])
def test_validate_and_train_agree(mutation, tmp_path):
    config = _config(tmp_path, mutation)
    validated = run_cli("validate", config, *_sets(mutation))
    trained = run_cli("train", config, "--output", tmp_path / "run", *_sets(mutation))
    for ran in (validated, trained):
        assert ran.exception is None and "Traceback" not in ran.stderr, ran
    assert validated.exit_code == trained.exit_code == 2, f"validate:\n{validated}\ntrain:\n{trained}"
    assert validated.stderr == trained.stderr, f"validate:\n{validated}\ntrain:\n{trained}"
    for key in [mutation["key"]] if isinstance(mutation["key"], str) else mutation["key"]:
        assert f": {key}: " in validated.stderr, f"expected {key}\n{validated}"
    # A problem is blamed on what wrote it: the file (with its line), or the --set.
    assert (f"{config.name}:" in validated.stderr) == bool(mutation.get("edit") or mutation.get("delete")), validated
    assert ("--set " in validated.stderr) == bool(mutation.get("set")), validated
    assert not (tmp_path / "run").exists(), trained  # train stopped before it touched the run directory


def test_the_unmutated_base_is_valid_and_train_goes_on_to_the_data(tmp_path):
    config = _config(tmp_path, {"id": "base"})
    validated = run_cli("validate", config)
    assert validated.exit_code == 0, validated
    assert "valid — " in validated.stderr
    assert "checked with the data by --deep: data files and columns, input shape, layer shapes, output width" \
        in validated.stderr
    trained = run_cli("train", config, "--output", tmp_path / "run")
    assert trained.exit_code == 3 and "no-data-here.csv" in trained.stderr, trained


@pytest.mark.slow
def test_train_rejects_a_keras_typo_without_importing_tensorflow(tmp_path):
    config = _config(tmp_path, {"id": "typo", "edit": ["model.layers.0.activation=relux", "optimizer.type=adamm"]})
    code = ("import sys, runpy; sys.argv = ['mlcli', *sys.argv[1:]]; code = 0\n"
            "try:\n    runpy.run_module('mlcli', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as exc:\n    code = exc.code\n"
            "print('tensorflow imported:', 'tensorflow' in sys.modules, file=sys.stderr)\nsys.exit(code)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for command in (["validate", str(config)], ["train", str(config), "--output", str(tmp_path / "run")]):
        done = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, env=env,
                              cwd=REPO, timeout=120, check=False)
        assert done.returncode == 2, done.stderr
        assert "model.layers.0.activation: layer Dense: activation got 'relux'" in done.stderr
        assert "optimizer.type: 'adamm' is not a keras.optimizers name; did you mean 'adam'?" in done.stderr
        assert "tensorflow imported: False" in done.stderr, done.stderr
