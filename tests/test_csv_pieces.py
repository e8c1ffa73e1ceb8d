"""A CSV read into memory is parsed a few blocks at a time (mlcli.data.formats.csv._read_in_pieces, for
its memory): a run must come out exactly as a whole-file read makes it, even when the pieces infer
different types for a column (integers first, decimals later; numbers first, text labels later)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest
from conftest import run_cli

from mlcli.data.formats import csv as csv_format

CONFIG = """
name: pieces
seed: 3
data: {{train: {train}, test: {test}, label: label, validation: 0.2}}
model:
  layers: [{{type: Dense, units: 8, activation: relu}}, {{type: Dense, units: 3, activation: softmax}}]
optimizer: {{type: adam, learning_rate: 0.05}}
loss: categorical_crossentropy
metrics: [accuracy]
training: {{epochs: 2, batch_size: 16}}
"""


def table(path: Path, rows: int, labels: list[str]) -> Path:
    """Column a: integers in the first half, decimals after; b: decimals; the label cycles `labels`,
    but for its last one, which appears in the second half only."""
    rng = np.random.default_rng(len(labels) + rows)
    lines = ["a,b,label"]
    for row in range(rows):
        first = row < rows // 2
        a = f"{rng.integers(-50, 50)}" if first else f"{rng.normal(0, 20):.3f}"
        label = labels[row % (len(labels) - 1)] if first else labels[row % len(labels)]
        lines.append(f"{a},{rng.normal(0, 1):.4f},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def train(tmp_path: Path, name: str, labels: list[str], block: int | None, monkeypatch) -> dict:
    if block is not None:
        monkeypatch.setattr(csv_format, "CSV_BLOCK_BYTES", block)  # pieces of 8 blocks: ~60 rows each
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    config = tmp_path / f"{name}.yaml"
    config.write_text(CONFIG.format(train=table(data / "train.csv", 300, labels),
                                    test=table(data / "test.csv", 60, labels)))
    ran = run_cli("train", config, "--output", tmp_path / name, "--json", "--quiet")
    monkeypatch.undo()
    assert ran.exit_code == 0, ran
    run = tmp_path / name
    return {"metrics": json.loads((run / "metrics.json").read_text()),
            "labels": json.loads((run / "labels.json").read_text()),
            "files": json.loads((run / "run.json").read_text())["data"]}


@pytest.mark.slow
@pytest.mark.parametrize("labels", [["0", "1", "2"], ["7", "8", "cat"]], ids=["integer-labels", "text-labels"])
def test_a_csv_read_in_pieces_trains_exactly_as_read_whole(tmp_path, monkeypatch, labels):
    pieces = train(tmp_path, "pieces", labels, 150, monkeypatch)
    whole = train(tmp_path, "whole", labels, 1 << 30, monkeypatch)  # one piece: the whole file
    # The classes keep the kind the whole file's inference gives them: integers, or text once one
    # label (in the file's last piece) is not a number.
    assert pieces["labels"] == whole["labels"] == ([0, 1, 2] if labels[0] == "0" else ["7", "8", "cat"])
    assert pieces["metrics"] == whole["metrics"]
    assert pieces["files"] == whole["files"]


def quoted_table(rows: int, newline: str, last_newline: bool) -> str:
    """Text cells with the delimiter and quotes inside quotes ("" escapes), numbers beside."""
    lines = ['id,note,x']
    for row in range(rows):
        note = f'"row {row}, ""quoted"", {{x}}"' if row % 3 == 0 else f"plain {row}"
        lines.append(f"{row},{note},{row / 7:.3f}")
    return newline.join(lines) + (newline if last_newline else "")


@pytest.mark.parametrize("block", [64, 150, 4000])
@pytest.mark.parametrize("newline,last_newline", [("\n", True), ("\r\n", False)], ids=["lf", "crlf-no-last"])
def test_pieces_cut_only_between_rows(tmp_path, monkeypatch, block, newline, last_newline):
    """Each piece ends at a row end outside quotes, for a file mapped into memory and for a gzip
    stream alike: the pieces together are the table one whole-file read makes, row for row."""
    text = quoted_table(90, newline, last_newline) + newline * 3  # blank lines at the end
    plain = tmp_path / "q.csv"
    plain.write_bytes(text.encode())
    packed = tmp_path / "q.csv.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    whole = pacsv.read_csv(plain)
    monkeypatch.setattr(csv_format, "CSV_BLOCK_BYTES", block)
    for path in (plain, packed):
        pieces = list(csv_format._parallel_csv(path, None, (), convert=csv_format._inferring_options()))
        assert len(pieces) > (1 if block < 4000 else 0)
        assert sum(piece.num_rows for piece in pieces) == whole.num_rows == 90
        for name in whole.column_names:
            assert [v for piece in pieces for v in piece.column(name).to_pylist()] == whole.column(name).to_pylist()
