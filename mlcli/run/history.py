"""history.csv: one row per finished epoch, every number written so it reads back exactly."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from mlcli.run.files import write_text


def write_history(path: Path, rows: list[dict]) -> None:
    """history.csv: one row per finished epoch, rewritten atomically so a kill never truncates it."""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    write_text(path, buffer.getvalue())


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # shortest exact round-trip
    return "" if value is None else value


def read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        rows = []
        for row in csv.DictReader(handle):
            rows.append({k: _parse_number(v) for k, v in row.items()})
        return rows


def _parse_number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text
