"""Writes the data corpus (tests/corpus/data/*) — run by hand, the output is committed.

    python tests/corpus/make_data.py

Each file is wrong in one way (or, for the 0-exit entries of EXPECT.yaml, right in an awkward way
that must still work). What each should do is in data/EXPECT.yaml, which is written by hand; this
script only makes the bytes, so every file is small and reproducible. A directory where a file is
expected and an unreadable file are made by tests/test_corpus.py at run time, not here.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "data"
HEADER = "a,b,label"


def rows(n: int = 40) -> list[str]:
    """A small, learnable two-class table: features a, b; label 0/1."""
    return [f"{i % 7},{(i * 3) % 5},{i % 2}" for i in range(n)]


def table(lines: list[str], header: str = HEADER) -> str:
    return "\n".join([header, *lines]) + "\n"


def replaced(row: int, text: str, header: str = HEADER) -> str:
    """The good table with data row `row` (1-based, header excluded) replaced by `text`."""
    lines = rows()
    lines[row - 1] = text
    return table(lines, header)


def xy(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([[i % 7, (i * 3) % 5] for i in range(n)], dtype=np.float32)
    return x, np.arange(n) % 2


def npz_bytes(**arrays) -> bytes:
    """What np.savez writes, with a fixed timestamp so that re-running this script changes no byte."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(2020, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asanyarray(array), allow_pickle=True)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def parquet_bytes(columns: dict) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def files() -> dict[str, bytes | str]:
    x, y = xy()
    good_parquet = parquet_bytes({"a": x[:, 0].astype(np.float64), "b": x[:, 1].astype(np.float64), "label": y})
    x_nan = x.copy()
    x_nan[3, 1] = np.nan
    parquet_nan = x[:, 0].astype(np.float64)
    parquet_nan[4] = np.nan
    return {
        # --- good: must train (exit 0) ---
        "00-base.csv": table(rows()),
        "07-bom-header.csv": "\ufeff" + table(rows()),
        "44-crlf-quoted-header.csv": table(rows(), header='"a","b","label"').replace("\n", "\r\n"),
        "45-gzip.csv.gz": gzip.compress(table(rows()).encode(), mtime=0),
        "46-good.parquet": good_parquet,
        "47-good.npz": npz_bytes(x=x, y=y),
        # --- bad ---
        "01-empty.csv": "",
        "02-header-only.csv": HEADER + "\n",
        "03-ragged-row-long.csv": replaced(12, "1,2,3,4"),
        "04-ragged-row-short.csv": replaced(20, "1,0"),
        "05-semicolon-delimiter.csv": table([r.replace(",", ";") for r in rows()], header="a;b;label"),
        "06-tab-delimiter.csv": table([r.replace(",", "\t") for r in rows()], header="a\tb\tlabel"),
        "08-text-in-feature.csv": replaced(6, "3,abc,1"),
        "09-nan-feature.csv": replaced(3, "nan,1,0"),
        "10-inf-feature.csv": replaced(9, "1,inf,0"),
        "11-neg-inf-feature.csv": replaced(15, "-inf,1,0"),
        "12-huge-value.csv": replaced(2, "1e39,1,1"),
        "13-empty-field.csv": replaced(4, ",1,1"),
        "14-one-class.csv": table([f"{i % 7},{i % 5},7" for i in range(30)]),
        "15-three-classes.csv": table([f"{i % 7},{(i * 3) % 5},{i % 3}" for i in range(30)]),
        "16-unseen-label.csv": table(["1,2,0", "3,4,1", "3,1,5"]),
        "17-latin1-value.csv": replaced(3, "1,caf\xe9,0").encode("latin-1"),
        "18-latin1-header.csv": table(rows(), header="a,b\xe9,label").encode("latin-1"),
        "19-duplicate-columns.csv": table(rows(), header="a,a,label"),
        "20-missing-label-column.csv": table(rows(), header="a,b,target"),
        "21-missing-feature-column.csv": table(rows()),
        "22-pickled-objects.npz": npz_bytes(x=np.array([[1, 2]] * 40, dtype=object), y=y),
        "23-npz-without-y.npz": npz_bytes(x=x, labels=y),
        "24-npz-length-mismatch.npz": npz_bytes(x=x, y=y[:30]),
        "25-truncated.parquet": good_parquet[: len(good_parquet) // 2],
        "26-unknown-extension.txt": table(rows()),
        "27-empty-label.csv": replaced(7, "1,2,"),
        "28-corrupt-gzip.csv.gz": gzip.compress(table(rows()).encode(), mtime=0)[:60],
        "29-only-label-column.csv": table([str(i % 2) for i in range(20)], header="label"),
        "30-npz-1d-features.npz": npz_bytes(x=x[:, 0], y=y),
        "31-npz-text-features.npz": npz_bytes(x=np.array([["a", "b"]] * 40), y=y),
        "32-npz-zero-rows.npz": npz_bytes(x=np.zeros((0, 2), np.float32), y=np.zeros(0, np.int64)),
        "33-not-a-zip.npz": table(rows()),
        "34-parquet-text-column.parquet": parquet_bytes(
            {"a": [str(v) for v in x[:, 0]][:10] + ["abc"] + [str(v) for v in x[:, 0]][11:],
             "b": x[:, 1].astype(np.float64), "label": y}),
        "35-parquet-nan.parquet": parquet_bytes({"a": parquet_nan, "b": x[:, 1].astype(np.float64), "label": y}),
        "36-npz-nan.npz": npz_bytes(x=x_nan, y=y),
        "37-regression-text-target.csv": replaced(5, "1,2,high"),
        "38-regression-inf-target.csv": replaced(8, "1,2,inf"),
        "39-validation-missing-column.csv": table(["1,0", "3,1"], header="a,label"),
        "40-test-nan.csv": table(["1,2,0", "nan,4,1"]),
        "41-binary-garbage.csv": bytes(range(256)) * 4,
        "42-npz-3d-features.npz": npz_bytes(x=np.stack([x, x], axis=1), y=y),
        "43-label-column-all-empty.csv": table([f"{i % 7},{i % 5}," for i in range(20)]),
        "48-header-spaces.csv": table(rows(), header="a, b, label"),
        "49-npz-object-labels.npz": npz_bytes(x=x, y=np.array([str(v) for v in y], dtype=object)),
        "50-parquet-is-csv.parquet": table(rows()),
        "51-utf16.csv": table(rows()).encode("utf-16"),
        "52-npy-renamed.npz": npy_bytes(x),
        "53-label-case.csv": table(rows(), header="a,b,Label"),
        "55-rare-class.csv": table(rows() + ["3,3,2", "4,4,2"]),
        "54-label-first.csv": table([f"{i % 2},{i % 7},{(i * 3) % 5}" for i in range(40)], header="target,a,b"),
        "56-string-label-empty.csv": table([f"{i % 7},{(i * 3) % 5},{'yes' if i % 2 else 'no'}" if i != 13
                                            else "6,4," for i in range(40)]),
        "57-huge-finite-value.csv": table([*rows(20), "3e38,1,0", *rows(40)[20:]]),
        "58-boolean-feature.csv": table([f"{i % 7},{'True' if i % 3 else 'False'},{i % 2}" for i in range(40)]),
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, content in files().items():
        data = content.encode("utf-8") if isinstance(content, str) else content
        (OUT / name).write_bytes(data)
    print(f"wrote {len(files())} files to {OUT}")


if __name__ == "__main__":
    main()
