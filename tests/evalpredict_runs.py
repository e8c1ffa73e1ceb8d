"""Tiny trained runs shared by test_evaluate.py and test_predict.py, each trained once per pytest
process through the real CLI (`mlcli train ... --quiet`), plus small data helpers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from conftest import CONFIGS, REPO, run_cli

DIGITS_TEST = REPO / "mlcli" / "datasets" / "digits_test.csv.gz"
ANIMALS = ["cat", "dog", "owl"]
_cache: dict[str, Path] = {}


def trained(name: str, tmp_path_factory) -> Path:
    """The run directory of one of the runs below, trained on first use."""
    if name not in _cache:
        folder = tmp_path_factory.mktemp(f"run-{name}")
        _cache[name] = _TRAIN[name](folder)
    return _cache[name]


def _train(*args) -> None:
    ran = run_cli("train", *map(str, args), "--quiet")
    assert ran.exit_code == 0, ran


def _digits(folder: Path) -> Path:
    _train(CONFIGS / "tiny.yaml", "--output", folder / "run")
    return folder / "run"


def _digits_validation_only(folder: Path) -> Path:
    _train(CONFIGS / "tiny.yaml", "--output", folder / "run", "--set", "data.test=null")
    return folder / "run"


def _digits_subset(folder: Path) -> Path:
    # data.classes keeps digits 0-2: training (and so evaluate's default data) drop the other rows.
    _train(CONFIGS / "tiny.yaml", "--output", folder / "run", "--set", "data.classes=[0,1,2]",
           "--set", "model.layers.1.units=3")
    return folder / "run"


def _diabetes(folder: Path) -> Path:
    _train(CONFIGS / "diabetes.yaml", "--output", folder / "run", "--set", "training.epochs=2")
    return folder / "run"


def animals_csv(path: Path, rows: int, seed: int, names: list = ANIMALS, label: str = "animal") -> Path:
    """Three classes (`names`, strings by default) in four numeric features (well separated blobs)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=rows)
    centres = np.array([[0, 0, 0, 0], [3, 3, 0, 0], [0, 3, 3, 3]], dtype=float)
    x = centres[labels] + rng.normal(scale=0.7, size=(rows, 4))
    lines = [f"f1,f2,f3,f4,{label}"]
    lines += [",".join(f"{v:.4f}" for v in row) + f",{names[k]}" for row, k in zip(x, labels)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _blobs(folder: Path, name: str, names: list, label: str) -> Path:
    """Three classes of animals_csv rows named `names`: 300 to train on, 60 to test with."""
    animals_csv(folder / "train.csv", 300, seed=1, names=names, label=label)
    animals_csv(folder / "test.csv", 60, seed=2, names=names, label=label)
    (folder / f"{name}.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        seed: 3
        data: {{train: train.csv, test: test.csv, label: {label}, validation: 0.2}}
        model:
          layers:
            - {{type: Dense, units: 8, activation: relu}}
            - {{type: Dense, units: 3, activation: softmax}}
        training: {{epochs: 3, batch_size: 32}}
        """))
    _train(folder / f"{name}.yaml", "--output", folder / "run")
    return folder / "run"


def _animals(folder: Path) -> Path:
    return _blobs(folder, "animals", ANIMALS, "animal")


def _numbers(folder: Path) -> Path:
    """Integer labels 8, 9, 10: labels.json (and so the model's outputs) in numeric order, not text order."""
    return _blobs(folder, "numbers", [8, 9, 10], "n")


def _two_targets(folder: Path) -> Path:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 3))
    lines = ["a,b,c,up,down"] + [f"{a:.4f},{b:.4f},{c:.4f},{a + b:.4f},{b - c:.4f}" for a, b, c in x]
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    (folder / "two.yaml").write_text(textwrap.dedent("""\
        name: two
        data: {train: train.csv, label: [up, down], task: regression}
        model:
          layers:
            - {type: Dense, units: 8, activation: relu}
            - {type: Dense, units: 2}
        loss: mse
        metrics: [mae]
        training: {epochs: 2, batch_size: 32}
        """))
    _train(folder / "two.yaml", "--output", folder / "run")
    return folder / "run"


def _binary(folder: Path) -> Path:
    """One sigmoid unit and binary cross-entropy, string labels no/yes."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(240, 3))
    labels = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    lines = ["p,q,r,answer"] + [f"{a:.4f},{b:.4f},{c:.4f},{k}" for (a, b, c), k in zip(x, labels)]
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    (folder / "binary.yaml").write_text(textwrap.dedent("""\
        name: binary
        data: {train: train.csv, label: answer}
        model:
          layers:
            - {type: Dense, units: 4, activation: relu}
            - {type: Dense, units: 1, activation: sigmoid}
        loss: binary_crossentropy
        metrics: [accuracy]
        training: {epochs: 3, batch_size: 32}
        """))
    _train(folder / "binary.yaml", "--output", folder / "run")
    return folder / "run"


def _npz(folder: Path) -> Path:
    """Trained on an .npz file: its features are one array, x."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0).astype(np.int64)
    np.savez(folder / "train.npz", x=x, y=y)
    (folder / "npz.yaml").write_text(textwrap.dedent("""\
        name: npz
        data: {train: train.npz}
        model:
          layers:
            - {type: Dense, units: 3, activation: softmax}
        training: {epochs: 2, batch_size: 32}
        """))
    _train(folder / "npz.yaml", "--output", folder / "run")
    return folder / "run"


_TRAIN = {
    "binary": _binary, "npz": _npz,
    "digits": _digits, "digits_val": _digits_validation_only, "digits_subset": _digits_subset,
    "diabetes": _diabetes, "animals": _animals, "numbers": _numbers, "two_targets": _two_targets,
}


def digits_table():
    """The bundled digits test rows as a pyarrow Table (64 pixel columns, then label)."""
    import pyarrow.csv as pacsv

    return pacsv.read_csv(DIGITS_TEST)


def plain_keras_copy(source: Path, target: Path) -> Path:
    """`source` as Keras alone would have saved it: without the mlcli.json member mlcli adds."""
    import zipfile

    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as plain:
        for item in original.infolist():
            if item.filename != "mlcli.json":
                plain.writestr(item, original.read(item.filename))
    return target


def write_csv(table, path: Path) -> Path:
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, path)
    return path


def read_output(path: Path):
    """A predict output (.csv, .parquet, .jsonl) as a pyarrow Table."""
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        return pq.read_table(path)
    if path.suffix == ".jsonl":
        return pajson.read_json(path)
    return pacsv.read_csv(path)


def read_csv_text(text: str):
    import io

    import pyarrow.csv as pacsv

    return pacsv.read_csv(io.BytesIO(text.encode()))
