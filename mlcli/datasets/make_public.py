"""Rebuild the bundled penguins and autompg tables from the files in two PyPI wheels (see LICENSE.md):

    pip download --no-deps palmerpenguins vega_datasets   # then unzip both wheels, and:
    python -m mlcli.datasets.make_public PENGUINS_CSV CARS_JSON

- penguins: palmerpenguins/data/penguins.csv, 344 penguins; "NA" becomes an empty cell (a missing
  value); a fixed stratified split by species, 20% for test (NumPy default_rng(20240701)).
- autompg: vega_datasets/_data/cars.json (the UCI auto-mpg table), 406 cars; the 8 without a
  Miles_per_Gallon are left out (no target); the year becomes model_year (1970..1982); a fixed random
  split, 20% for test (NumPy default_rng(20240702)).

Written with gzip mtime 0, so a rerun changes no byte.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
AUTOMPG_COLUMNS = {"Miles_per_Gallon": "mpg", "Cylinders": "cylinders", "Displacement": "displacement",
                   "Horsepower": "horsepower", "Weight_in_lbs": "weight", "Acceleration": "acceleration",
                   "Year": "model_year", "Origin": "origin", "Name": "name"}


def penguins(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, [["" if v == "NA" else v for v in row] for row in reader]


def autompg(path: Path) -> tuple[list[str], list[list[str]]]:
    cars = json.loads(path.read_text())
    rows = []
    for car in cars:
        if car["Miles_per_Gallon"] is None:
            continue
        row = []
        for key in AUTOMPG_COLUMNS:
            value = car[key]
            if key == "Year":
                value = value[:4]
            row.append("" if value is None else str(value))
        rows.append(row)
    return list(AUTOMPG_COLUMNS.values()), rows


def split(rows: list[list[str]], seed: int, by: int | None = None) -> tuple[list, list]:
    """20% for test: of each value of column `by` (stratified), or of all rows; file order kept."""
    rng = np.random.default_rng(seed)
    groups = {}
    for i, row in enumerate(rows):
        groups.setdefault(row[by] if by is not None else "", []).append(i)
    test = set()
    for key in sorted(groups):
        members = groups[key]
        test.update(rng.permutation(members)[: int(round(0.2 * len(members)))].tolist())
    return [r for i, r in enumerate(rows) if i not in test], [r for i, r in enumerate(rows) if i in test]


def write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
        handle.write(text.getvalue().encode("utf-8"))


def main() -> None:
    penguins_csv, cars_json = map(Path, sys.argv[1:3])
    header, rows = penguins(penguins_csv)
    train, test = split(rows, 20240701, by=header.index("species"))
    write(HERE / "penguins_train.csv.gz", header, train)
    write(HERE / "penguins_test.csv.gz", header, test)
    header, rows = autompg(cars_json)
    train, test = split(rows, 20240702)
    write(HERE / "autompg_train.csv.gz", header, train)
    write(HERE / "autompg_test.csv.gz", header, test)


if __name__ == "__main__":
    main()
