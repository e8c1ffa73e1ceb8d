"""The corpus of bad inputs (tests/corpus/): every config and data file that is wrong in its own way
is run through `mlcli train` and must end with its exit code, a message naming the problem, no
traceback, and no run directory claiming success.

- configs/NN-name.yaml: the first line is `# expect: CODE: fragment`. Paths inside are relative to
  the config (they use ../data/00-base.csv and builtin:digits).
- data/*: data/EXPECT.yaml says what each file does, trained through a small template config.
  Entries with exit 0 are awkward-but-valid files that must train (e.g. a UTF-8 BOM).
- A directory where a file is expected and an unreadable file are made here, at run time.
"""

from __future__ import annotations

import builtins
import json
import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

CORPUS = Path(__file__).resolve().parent / "corpus"
CONFIGS = sorted((CORPUS / "configs").glob("*.yaml"))
EXPECT = yaml.safe_load((CORPUS / "data" / "EXPECT.yaml").read_text(encoding="utf-8"))
DATA_FILES = sorted(p.name for p in (CORPUS / "data").iterdir() if p.name != "EXPECT.yaml")
BASE = CORPUS / "data" / "00-base.csv"  # the train file when a corpus file is the validation/test data

_EXPECT_LINE = re.compile(r"^# expect: (\d+): (.+)$")

TEMPLATE = """\
name: corpus
data:
  train: {train}
  validation: {validation}
  test: {test}
  label: {label}
model:
  layers:
    - {{type: Dense, units: 4, activation: relu}}
    - {{type: Dense, units: 2, activation: softmax}}
training: {{epochs: 1, batch_size: 8}}
"""


def _expectation(config: Path) -> tuple[int, str]:
    # Read as bytes: some corpus configs are deliberately not UTF-8 after their first line.
    first = config.read_bytes().split(b"\n", 1)[0].decode("utf-8")
    match = _EXPECT_LINE.match(first)
    assert match, f"{config.name}: the first line must be `# expect: CODE: fragment`, got {first!r}"
    return int(match.group(1)), match.group(2)


def _assert_failed_cleanly(ran, code: int, fragment: str, run_dir: Path) -> None:
    assert ran.exception is None, f"unexpected exception {ran.exception!r}\n{ran}"
    assert "Traceback" not in ran.stderr, ran
    assert ran.exit_code == code, ran
    assert fragment in ran.stderr, f"expected {fragment!r} in stderr\n{ran}"
    assert not (run_dir / "model.keras").exists(), f"{run_dir}/model.keras was written\n{ran}"
    manifest = run_dir / "run.json"
    if manifest.exists():
        assert json.loads(manifest.read_text()).get("status") != "completed", ran


def _assert_trained(ran, fragment: str, run_dir: Path) -> None:
    assert ran.exception is None, f"unexpected exception {ran.exception!r}\n{ran}"
    assert ran.exit_code == 0, ran
    assert fragment in ran.stderr, f"expected {fragment!r} in stderr\n{ran}"
    assert (run_dir / "model.keras").is_file(), ran
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed", ran


# ---- the corpus cannot shrink, and every file is accounted for ----------------------------------


def test_corpus_sizes():
    bad_data = [name for name, spec in EXPECT.items() if spec["exit"] != 0]
    assert len(CONFIGS) >= 40, f"only {len(CONFIGS)} corpus configs"
    assert len(bad_data) >= 25, f"only {len(bad_data)} bad data files"


def test_every_data_file_has_an_expectation_and_every_expectation_a_file():
    assert sorted(EXPECT) == DATA_FILES


def test_every_config_states_its_expectation_and_names_are_unique():
    numbers = [p.name.split("-", 1)[0] for p in CONFIGS]
    assert len(set(numbers)) == len(numbers), "two corpus configs share a number"
    for config in CONFIGS:
        code, fragment = _expectation(config)
        assert code in (2, 3), f"{config.name}: a bad config ends with exit 2 (config) or 3 (data), not {code}"
        assert len(fragment) >= 10, f"{config.name}: the expected fragment {fragment!r} is too vague"


# ---- configs ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_bad_config(config: Path, tmp_path: Path):
    code, fragment = _expectation(config)
    run_dir = tmp_path / "run"
    ran = run_cli("train", config, "--output", run_dir)
    _assert_failed_cleanly(ran, code, fragment, run_dir)
    if code == 2:  # config errors name the file that has the mistake (docs/contract.md §2)
        assert config.name in ran.stderr, ran


# ---- data files ---------------------------------------------------------------------------------


def _data_config(tmp_path: Path, path: Path, spec: dict) -> Path:
    role = spec.get("role", "train")
    assert role in ("train", "validation", "test"), spec
    fields = {"train": BASE, "validation": 0.25, "test": "null", "label": spec.get("label", "label")}
    fields[role] = path
    config = tmp_path / "c.yaml"
    config.write_text(TEMPLATE.format(**fields))
    return config


def _train_data(tmp_path: Path, path: Path, spec: dict):
    run_dir = tmp_path / "run"
    sets = [arg for item in spec.get("set", []) for arg in ("--set", item)]
    return run_cli("train", _data_config(tmp_path, path, spec), "--output", run_dir, *sets), run_dir


@pytest.mark.slow
@pytest.mark.parametrize("name", DATA_FILES)
def test_data_file(name: str, tmp_path: Path):
    spec = EXPECT[name]
    ran, run_dir = _train_data(tmp_path, CORPUS / "data" / name, spec)
    if spec["exit"] == 0:
        _assert_trained(ran, spec["message"], run_dir)
        return
    _assert_failed_cleanly(ran, spec["exit"], spec["message"], run_dir)
    if spec["exit"] == 3:  # data errors name the file (docs/contract.md §2)
        assert name in ran.stderr, ran


@pytest.mark.slow
def test_directory_where_a_file_is_expected(tmp_path: Path):
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    (folder / "part-0.csv").write_text(BASE.read_text())
    ran, run_dir = _train_data(tmp_path, folder, {})
    _assert_failed_cleanly(ran, 3, "folder.csv: is a directory — expected a .csv, .parquet or .npz file", run_dir)


@pytest.mark.slow
def test_directory_where_a_validation_file_is_expected(tmp_path: Path):
    folder = tmp_path / "val.parquet"
    folder.mkdir()
    ran, run_dir = _train_data(tmp_path, folder, {"role": "validation"})
    _assert_failed_cleanly(ran, 3, f"data.validation: {folder}: is a directory", run_dir)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads any file, so chmod 000 cannot make one unreadable")
def test_unreadable_file(tmp_path: Path):
    unreadable = tmp_path / "secret.csv"
    unreadable.write_text(BASE.read_text())
    unreadable.chmod(0)
    try:
        ran, run_dir = _train_data(tmp_path, unreadable, {})
    finally:
        unreadable.chmod(0o600)
    _assert_failed_cleanly(ran, 3, "secret.csv: permission denied — the file is not readable", run_dir)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="the real chmod 000 test runs instead")
def test_unreadable_file_as_root(tmp_path: Path, monkeypatch):
    # Root reads any file, so the kernel's refusal is faked at the boundaries: pyarrow's and Python's open of this file.
    import pyarrow.csv as pacsv

    unreadable = tmp_path / "secret.csv"
    unreadable.write_text(BASE.read_text())
    real_read_csv = pacsv.read_csv

    def refusing_read_csv(source, *args, **kwargs):
        if Path(str(source)) == unreadable:
            raise PermissionError(13, "Permission denied", str(unreadable))
        return real_read_csv(source, *args, **kwargs)

    monkeypatch.setattr(pacsv, "read_csv", refusing_read_csv)
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):  # the CSV reader's own open (it parses a few blocks at a time)
        if isinstance(file, (str, os.PathLike)) and Path(file) == unreadable:
            raise PermissionError(13, "Permission denied", str(unreadable))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    ran, run_dir = _train_data(tmp_path, unreadable, {})
    _assert_failed_cleanly(ran, 3, "secret.csv: permission denied — the file is not readable", run_dir)


def test_unreadable_config_file(tmp_path: Path):
    # A config that cannot be read is exit 2 naming it; as root, a directory stands in for it.
    config = tmp_path / "c.yaml"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        config.write_text(f"data: {{train: {BASE}}}\n")
        config.chmod(0)
        fragment = "c.yaml: cannot be read (Permission denied)"
    else:
        config.mkdir()
        fragment = f"{config} is a directory"
    try:
        ran = run_cli("train", config, "--output", tmp_path / "run")
    finally:
        if config.is_file():
            config.chmod(0o600)
    _assert_failed_cleanly(ran, 2, fragment, tmp_path / "run")
