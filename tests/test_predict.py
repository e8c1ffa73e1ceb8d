"""`mlcli predict` through the real CLI: output formats and columns (docs/contract.md §5), stdin, columns by
name, streaming in batches, agreement with plain Keras and with evaluate, and every user error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import REPO, run_cli, run_process
from evalpredict_runs import digits_table, plain_keras_copy, read_csv_text, read_output, trained, write_csv

pytestmark = pytest.mark.slow
PROBS = [f"prob_{d}" for d in range(10)]


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return trained("digits", tmp_path_factory)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """200 digits rows with an id column in front (and the label column, which predict ignores)."""
    table = digits_table().slice(0, 200)
    table = table.add_column(0, "id", pa.array([f"r{i:03d}" for i in range(200)]))
    return write_csv(table, tmp_path_factory.mktemp("sample") / "sample.csv")


@pytest.fixture(scope="module")
def reference(digits, sample) -> dict:
    """The output of `mlcli predict` on the sample, to compare the other ways of asking with."""
    ran = run_cli("predict", str(digits), str(sample), "--keep", "id")
    assert ran.exit_code == 0, ran
    return read_csv_text(ran.stdout).to_pydict()


def _predict(*args, input: str | None = None):
    ran = run_cli("predict", *map(str, args), input=input)
    assert ran.exit_code == 0, ran
    assert ran.exception is None
    return ran


def _assert_clean_error(ran, code: int, *texts: str) -> None:
    assert ran.exit_code == code, ran
    assert "Traceback" not in ran.stderr and ran.exception is None, ran
    for text in texts:
        assert text in ran.stderr, ran


def _same(a: dict, b: dict, columns=None) -> None:
    for column in columns or a:
        if column.startswith(("prob_", "prediction_")):
            np.testing.assert_allclose(a[column], b[column], atol=1e-6, err_msg=column)
        else:
            assert a[column] == b[column], column


# ---- columns and formats --------------------------------------------------------------------------

def test_stdout_csv_columns_and_order(reference, sample):
    assert list(reference) == ["id", "prediction", *PROBS]
    assert reference["id"] == [f"r{i:03d}" for i in range(200)]  # rows keep their order
    probs = np.array([reference[c] for c in PROBS]).T
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert reference["prediction"] == probs.argmax(axis=1).tolist()


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_each_output_format(digits, sample, reference, tmp_path, suffix):
    out = tmp_path / f"out{suffix}"
    ran = _predict(digits, sample, "--keep", "id", "--output", out)
    assert ran.stdout == ""
    assert "200 row(s) predicted" in ran.stderr
    table = read_output(out)
    assert table.column_names == ["id", "prediction", *PROBS]
    _same(reference, table.to_pydict())
    if suffix == ".jsonl":
        first = json.loads(out.read_text().splitlines()[0])
        assert first["id"] == "r000" and isinstance(first["prediction"], int)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left behind


def test_kept_csv_columns_are_typed_in_jsonl_and_parquet(digits, tmp_path):
    table = digits_table().slice(0, 50)
    table = table.add_column(0, "n", pa.array([str(i) for i in range(50)]))
    table = table.add_column(1, "score", pa.array([f"{i / 4}" for i in range(50)]))
    table = table.add_column(2, "name", pa.array([f"r{i}" for i in range(50)]))
    data = write_csv(table, tmp_path / "in.csv")
    keep = ["--keep", "n", "--keep", "score", "--keep", "name"]
    _predict(digits, data, *keep, "--output", tmp_path / "out.jsonl")
    first = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[3])
    assert (first["n"], first["score"], first["name"]) == (3, 0.75, "r3")
    _predict(digits, data, *keep, "--output", tmp_path / "out.parquet")
    schema = read_output(tmp_path / "out.parquet").schema
    assert (schema.field("n").type, schema.field("score").type, schema.field("name").type) == \
        (pa.int64(), pa.float64(), pa.string())
    csv_text = _predict(digits, data, *keep).stdout.splitlines()  # CSV copies the text as written
    assert csv_text[0].startswith("n,score,name,prediction") and csv_text[4].startswith("3,0.75,r3,")


def test_a_kept_column_that_changes_type_after_the_first_batch(digits, tmp_path, monkeypatch):
    rows = 70_000  # more than one read batch (65,536 rows)
    # Arrow infers a column's type chunk by chunk (mlcli.data.formats.csv): with 4 blocks a chunk (8 MB,
    # about 40,000 of these rows) the text value lands in the second chunk, its first rows integers.
    monkeypatch.setattr("mlcli.data.formats.csv.CHUNK_BLOCKS", 4)
    test_rows = digits_table()
    table = test_rows.take(pa.array(np.arange(rows) % test_rows.num_rows))
    ids = [str(i) for i in range(rows)]
    ids[68_000] = "x12"
    data = write_csv(table.add_column(0, "n", pa.array(ids)), tmp_path / "in.csv")
    ran = run_cli("predict", str(digits), str(data), "--keep", "n", "--output", str(tmp_path / "out.parquet"))
    _assert_clean_error(ran, 3, "--keep column 'n', row 68001: 'x12' is not an integer like the rows before it",
                        "write CSV output")
    assert list(tmp_path.iterdir()) == [data]  # no output, not even a temporary file
    lines = _predict(digits, data, "--keep", "n", "--no-probabilities").stdout.splitlines()
    assert len(lines) == rows + 1 and lines[68_001].startswith("x12,")


def test_no_probabilities(digits, sample, reference):
    table = read_csv_text(_predict(digits, sample, "--no-probabilities").stdout)
    assert table.column_names == ["prediction"]
    assert table.column("prediction").to_pylist() == reference["prediction"]


def test_stdin_input(digits, sample, reference):
    ran = _predict(digits, "-", "--keep", "id", input=sample.read_text())
    _same(reference, read_csv_text(ran.stdout).to_pydict())


def test_parquet_and_npz_inputs(digits, sample, reference, tmp_path):
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pacsv.read_csv(sample)
    pq.write_table(table, tmp_path / "in.parquet")
    from_parquet = read_csv_text(_predict(digits, tmp_path / "in.parquet", "--keep", "id").stdout)
    _same(reference, from_parquet.to_pydict())
    x = np.stack([table.column(f"pixel_{r}_{c}").to_numpy() for r in range(8) for c in range(8)], axis=1)
    np.savez(tmp_path / "in.npz", x=x.astype(np.float32))
    from_npz = read_csv_text(_predict(digits, tmp_path / "in.npz").stdout).to_pydict()
    _same(reference, from_npz, ["prediction", *PROBS])


# ---- columns by name ----------------------------------------------------------------------------

def test_reordered_and_extra_columns(digits, sample, reference, tmp_path):
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(sample)
    names = table.column_names
    rng = np.random.default_rng(0)
    shuffled = table.select([names[i] for i in rng.permutation(len(names))])
    shuffled = shuffled.append_column("notes", pa.array(["x"] * table.num_rows))
    ran = _predict(digits, write_csv(shuffled, tmp_path / "shuffled.csv"), "--keep", "id")
    assert read_csv_text(ran.stdout).to_pydict() == reference  # identical, not just close
    assert ran.stderr.count("ignoring") == 1  # one notice, for the whole file
    assert "label" in ran.stderr and "notes" in ran.stderr


def test_missing_column_is_exit_3_naming_it(digits, sample, tmp_path):
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(sample).drop_columns(["pixel_2_2"])
    out = tmp_path / "out.csv"
    ran = run_cli("predict", str(digits), str(write_csv(table, tmp_path / "in.csv")), "--output", str(out))
    _assert_clean_error(ran, 3, "'pixel_2_2' not found")
    assert not out.exists()


def test_keep_errors(digits, sample):
    _assert_clean_error(run_cli("predict", str(digits), str(sample), "--keep", "nope"), 3,
                        "--keep column 'nope' not found")
    # A name the output uses is refused before anything is read.
    _assert_clean_error(run_cli("predict", str(digits), str(sample), "--keep", "prediction"), 2,
                        "the output already has a column 'prediction'")


def test_keep_clashing_with_an_output_column_is_exit_2(digits, tmp_path):
    table = digits_table().slice(0, 5).append_column("prob_3", pa.array([1] * 5))
    ran = run_cli("predict", str(digits), str(write_csv(table, tmp_path / "in.csv")), "--keep", "prob_3")
    _assert_clean_error(ran, 2, "already has a column 'prob_3'")


def test_unknown_output_type_is_exit_2(digits, sample, tmp_path):
    ran = run_cli("predict", str(digits), str(sample), "--output", str(tmp_path / "out.xlsx"))
    _assert_clean_error(ran, 2, "unknown file type '.xlsx'", ".csv, .parquet or .jsonl")


def _bad_input(tmp_path: Path, kind: str) -> Path:
    import gzip

    import pyarrow.parquet as pq

    header = ",".join(digits_table().column_names)
    if kind == "duplicate":
        return _text(tmp_path / "d.csv", header + ",label\n" + ",".join(["1"] * 66) + "\n")
    if kind == "latin-1":
        (tmp_path / "l.csv").write_bytes(header.replace("label", "lab\xe9l").encode("latin-1") + b"\n")
        return tmp_path / "l.csv"
    if kind == "gzip":
        (tmp_path / "g.csv.gz").write_bytes(gzip.compress(b"a,b\n1,2\n")[:12])
        return tmp_path / "g.csv.gz"
    if kind == "parquet":
        pq.write_table(digits_table().slice(0, 5), tmp_path / "p.parquet")
        data = (tmp_path / "p.parquet").read_bytes()
        (tmp_path / "p.parquet").write_bytes(data[: len(data) // 2])
        return tmp_path / "p.parquet"
    arrays = {"no x": {"features": np.zeros((3, 64))}, "width": {"x": np.zeros((3, 63))},
              "text": {"x": np.full((3, 64), "a")}}[kind]
    np.savez(tmp_path / "n.npz", **arrays)
    return tmp_path / "n.npz"


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("kind, text", [
    ("duplicate", "column(s) label appear twice in the header"),
    ("latin-1", "save the file as UTF-8"),
    ("gzip", "cannot be read as CSV"),
    ("parquet", "cannot be read as PARQUET"),
    ("no x", "no array 'x'"),
    ("width", "has shape (3, 63) — the model takes (rows, 64 values)"),
    ("text", "holds <U1 values — expected numbers"),
])
def test_unreadable_inputs_are_exit_3(digits, tmp_path, kind, text):
    _assert_clean_error(run_cli("predict", str(digits), str(_bad_input(tmp_path, kind))), 3, text)


def test_npz_keep_arrays(digits, tmp_path):
    x = digits_table().slice(0, 4)
    pixels = np.stack([x.column(i).to_numpy() for i in range(64)], axis=1)
    np.savez(tmp_path / "k.npz", x=pixels, ids=np.array(["a", "b", "c", "d"]), bad=np.zeros(3))
    table = read_csv_text(_predict(digits, tmp_path / "k.npz", "--keep", "ids").stdout)
    assert table.column("ids").to_pylist() == ["a", "b", "c", "d"]
    _assert_clean_error(run_cli("predict", str(digits), str(tmp_path / "k.npz"), "--keep", "bad"), 3,
                        "array 'bad' has shape (3,) — expected (4,)")
    _assert_clean_error(run_cli("predict", str(digits), str(tmp_path / "k.npz"), "--keep", "nope"), 3,
                        "--keep array 'nope' not found")


def test_output_that_is_a_directory_is_exit_2(digits, sample, tmp_path):
    (tmp_path / "out.csv").mkdir()
    _assert_clean_error(run_cli("predict", str(digits), str(sample), "--output", str(tmp_path / "out.csv")), 2,
                        "is a directory")


def test_unwritable_output_is_exit_2(digits, sample, tmp_path):
    (tmp_path / "file").write_text("x")
    ran = run_cli("predict", str(digits), str(sample), "--output", str(tmp_path / "file" / "out.csv"))
    _assert_clean_error(ran, 2, "cannot write there")


def test_header_only_input_gives_header_only_output(digits, tmp_path):
    header = ",".join(digits_table().column_names)
    ran = _predict(digits, "-", input=header + "\n")
    assert ran.stdout.splitlines() == [",".join(["prediction", *PROBS])]
    _assert_clean_error(run_cli("predict", str(digits), "-", input=""), 3, "is empty")


# ---- streaming: batches, row numbers across batches, atomic output --------------------------------

@pytest.fixture
def small_blocks(monkeypatch):
    import mlcli.data.formats.csv

    monkeypatch.setattr(mlcli.data.formats.csv, "CSV_BLOCK_BYTES", 4096)  # ~20 rows per batch


def test_small_batches_give_the_same_predictions(digits, sample, reference, small_blocks):
    ran = _predict(digits, sample, "--keep", "id", "--batch-size", "7")
    _same(reference, read_csv_text(ran.stdout).to_pydict())


@pytest.mark.parametrize("value, message", [
    ("seven", "'seven' is not a number"),
    ("", "missing"),
    ("inf", "inf"),
])
def test_bad_value_deep_in_the_file_names_its_row(digits, sample, tmp_path, small_blocks, value, message):
    lines = sample.read_text().splitlines()
    cells = lines[150].split(",")
    cells[10] = value  # row 150, column pixel_1_1 (id is column 0)
    lines[150] = ",".join(cells)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.parquet"
    ran = run_cli("predict", str(digits), str(bad), "--output", str(out))
    _assert_clean_error(ran, 3, "column 'pixel_1_1', row 150", message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]  # no partial output file


def test_a_failed_predict_leaves_the_previous_output_as_it_was(digits, sample, tmp_path, small_blocks):
    # Written under a temporary name and renamed when complete: until then the old file stands whole.
    out = tmp_path / "out.csv"
    _predict(digits, sample, "--output", out)
    before = out.read_bytes()
    lines = sample.read_text().splitlines()
    cells = lines[150].split(",")
    cells[10] = "seven"  # row 150: a few batches are written before it is read
    lines[150] = ",".join(cells)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    ran = run_cli("predict", str(digits), str(bad), "--output", str(out))
    assert ran.exit_code == 3, ran
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "out.csv"]  # no temporary file left


# ---- agreement ------------------------------------------------------------------------------------

def test_predictions_equal_plain_keras_in_a_fresh_process(digits, sample, tmp_path):
    script = textwrap.dedent(f"""
        import os, numpy as np
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import keras, pyarrow.csv as pacsv
        table = pacsv.read_csv({str(sample)!r})
        x = np.stack([table.column(f"pixel_{{r}}_{{c}}").to_numpy() for r in range(8) for c in range(8)], axis=1)
        model = keras.saving.load_model({str(digits / "model.keras")!r})
        np.save({str(tmp_path / "keras.npy")!r}, model.predict(x.astype("float32"), verbose=0))
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    expected = np.load(tmp_path / "keras.npy")
    ran = run_process("predict", digits, sample, "--output", tmp_path / "p.parquet")
    assert ran.returncode == 0, ran.stderr
    got = read_output(tmp_path / "p.parquet").to_pydict()
    assert got["prediction"] == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose(np.array([got[c] for c in PROBS]).T, expected, atol=1e-6)


def _assert_predictions_are_evaluates(truth: list, predicted: list, document: dict) -> None:
    """Predictions counted against the true labels are evaluate's confusion matrix, row for row, and
    their share of hits is its accuracy."""
    classes = document["classes"]
    counted = [[sum(t == a and p == b for t, p in zip(truth, predicted)) for b in classes] for a in classes]
    assert counted == document["confusion_matrix"]
    assert np.mean([t == p for t, p in zip(truth, predicted)]) == pytest.approx(document["metrics"]["accuracy"],
                                                                                 abs=1e-6)


def test_accuracy_from_predict_equals_evaluate(digits, sample, reference):
    truth = read_output(sample).column("label").to_pylist()
    ran = run_cli("evaluate", str(digits), "--data", str(sample), "--json")
    assert ran.exit_code == 0, ran
    _assert_predictions_are_evaluates(truth, reference["prediction"], json.loads(ran.stdout))


def test_predict_equals_evaluate_for_labels_whose_text_order_is_not_theirs(tmp_path_factory, tmp_path):
    # 8, 9, 10: as text, 10 sorts first; predictions must name the class evaluate counted.
    run = trained("numbers", tmp_path_factory)
    test = run.parent / "test.csv"
    ran = run_cli("evaluate", str(run), "--json")
    assert ran.exit_code == 0, ran
    document = json.loads(ran.stdout)
    assert document["classes"] == [8, 9, 10] and document["samples"] == 60
    truth = read_output(test).column("n").to_pylist()
    for suffix in (".csv", ".parquet", ".jsonl"):
        _predict(run, test, "--output", tmp_path / f"p{suffix}")
        _assert_predictions_are_evaluates(truth, read_output(tmp_path / f"p{suffix}").column("prediction").to_pylist(),
                                          document)


# ---- labels, regression, checkpoints ----------------------------------------------------------------

def test_string_labels_round_trip(tmp_path_factory, tmp_path):
    run = trained("animals", tmp_path_factory)
    test = run.parent / "test.csv"
    for suffix in (".csv", ".parquet", ".jsonl"):
        _predict(run, test, "--output", tmp_path / f"p{suffix}")
        table = read_output(tmp_path / f"p{suffix}")
        assert table.column_names == ["prediction", "prob_cat", "prob_dog", "prob_owl"]
        assert set(table.column("prediction").to_pylist()) <= {"cat", "dog", "owl"}
    truth = read_output(test).column("animal").to_pylist()
    predicted = read_output(tmp_path / "p.csv").column("prediction").to_pylist()
    doc = json.loads(run_cli("evaluate", str(run), "--json").stdout)
    assert np.mean([t == p for t, p in zip(truth, predicted)]) == pytest.approx(doc["metrics"]["accuracy"], abs=1e-6)


def test_regression_outputs(tmp_path_factory, tmp_path):
    run = trained("diabetes", tmp_path_factory)
    ran = _predict(run, "builtin:diabetes/test", "--keep", "target")
    table = read_csv_text(ran.stdout)
    assert table.column_names == ["target", "prediction"]
    truth = read_output(REPO / "mlcli" / "datasets" / "diabetes_test.csv.gz").column("target")
    assert table.column("target").to_pylist() == truth.to_pylist()  # kept, in order
    assert pa.types.is_floating(table.column("prediction").type)
    two = trained("two_targets", tmp_path_factory)
    table = read_csv_text(_predict(two, two.parent / "train.csv").stdout)
    assert table.column_names == ["prediction_up", "prediction_down"]
    assert "ignoring 2 input column(s)" in _predict(two, two.parent / "train.csv").stderr


def test_keras_file_as_checkpoint(digits, sample, reference, tmp_path):
    inside = read_csv_text(_predict(digits / "model.keras", sample, "--keep", "id").stdout).to_pydict()
    _same(reference, inside)
    with_extra = write_csv(read_output(sample).append_column("extra", pa.array([0] * 200)), tmp_path / "e.csv")
    reordered = read_output(sample)
    reordered = write_csv(reordered.select(list(reversed(reordered.column_names))), tmp_path / "r.csv")
    # Copied out of its run, an mlcli model.keras still knows its columns and labels (mlcli.json inside).
    alone = tmp_path / "alone.keras"
    shutil.copy(digits / "model.keras", alone)
    ran = _predict(alone, sample, "--keep", "id")
    assert "its input columns and labels come from the mlcli.json mlcli saved inside it" in ran.stderr
    _same(reference, read_csv_text(ran.stdout).to_pydict())
    for data in (with_extra, reordered):  # matched by name, as in its run
        _same(reference, read_csv_text(_predict(alone, data, "--keep", "id").stdout).to_pydict())
    # Saved by Keras alone: no feature names, so every column but `label` and --keep is a feature, in order.
    plain = plain_keras_copy(digits / "model.keras", tmp_path / "plain.keras")
    ran = _predict(plain, sample, "--keep", "id")
    assert "class indices" in ran.stderr
    _same(reference, read_csv_text(ran.stdout).to_pydict())
    _assert_clean_error(run_cli("predict", str(plain), str(with_extra)), 3,
                        "the model takes 64 feature(s) but there are 66 column(s)")


def test_a_copied_model_keeps_its_string_labels(tmp_path_factory, tmp_path):
    run = trained("animals", tmp_path_factory)
    shutil.copy(run / "model.keras", tmp_path / "animals.keras")
    copied = read_csv_text(_predict(tmp_path / "animals.keras", run.parent / "test.csv").stdout)
    in_run = read_csv_text(_predict(run, run.parent / "test.csv").stdout)
    assert copied.column_names == ["prediction", "prob_cat", "prob_dog", "prob_owl"]
    assert copied.to_pydict() == in_run.to_pydict()
    assert set(copied.column("prediction").to_pylist()) <= {"cat", "dog", "owl"}


def test_bad_checkpoint_and_input(digits, tmp_path):
    (tmp_path / "broken.keras").write_bytes((digits / "model.keras").read_bytes()[:2000])
    _assert_clean_error(run_cli("predict", str(tmp_path / "broken.keras"), "builtin:digits/test"), 2,
                        "not a complete Keras archive")
    _assert_clean_error(run_cli("predict", str(digits), str(tmp_path / "none.csv")), 3, "none.csv", "not found")


def test_broken_pipe_is_not_an_error(digits, sample):
    done = subprocess.run(
        f"{sys.executable} -m mlcli predict {digits} builtin:digits | head -n 2",
        shell=True, capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )
    assert len(done.stdout.splitlines()) == 2
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_binary_sigmoid_model(tmp_path_factory, tmp_path):
    run = trained("binary", tmp_path_factory)
    data = run.parent / "train.csv"
    table = read_csv_text(_predict(run, data, "--keep", "answer").stdout)
    assert table.column_names == ["answer", "prediction", "prob_no", "prob_yes"]
    p_yes = np.array(table.column("prob_yes").to_pylist())
    np.testing.assert_allclose(np.array(table.column("prob_no").to_pylist()) + p_yes, 1.0, atol=1e-6)
    assert table.column("prediction").to_pylist() == np.where(p_yes > 0.5, "yes", "no").tolist()
    # The class decision is Keras's binary_accuracy's: evaluate's accuracy is predict's.
    accuracy = np.mean([a == p for a, p in zip(table.column("answer").to_pylist(),
                                                table.column("prediction").to_pylist())])
    doc = json.loads(run_cli("evaluate", str(run), "--data", str(data), "--json").stdout)
    assert doc["metrics"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert np.trace(doc["confusion_matrix"]) / doc["samples"] == pytest.approx(accuracy, abs=1e-12)


def test_npz_trained_run_reads_npz_and_named_columns(tmp_path_factory, tmp_path):
    run = trained("npz", tmp_path_factory)
    x = np.load(run.parent / "train.npz")["x"][:30]
    np.savez(tmp_path / "in.npz", x=x)
    from_npz = read_csv_text(_predict(run, tmp_path / "in.npz").stdout).to_pydict()
    # As a table, an array x is the columns x_0, x_1, ... (in any order).
    columns = {f"x_{i}": x[:, i] for i in (3, 1, 0, 2)}
    csv = write_csv(pa.table(columns), tmp_path / "in.csv")
    _same(from_npz, read_csv_text(_predict(run, csv).stdout).to_pydict())
    doc = json.loads(run_cli("evaluate", str(run), "--json").stdout)  # the validation split of the .npz
    assert doc["source"] == "data.validation" and doc["samples"] == 40


def test_unreadable_row_deep_in_the_file_is_exit_3(digits, sample, tmp_path, small_blocks):
    lines = sample.read_text().splitlines()
    lines[120] += ",1,2"
    (tmp_path / "ragged.csv").write_text("\n".join(lines) + "\n")
    ran = run_cli("predict", str(digits), str(tmp_path / "ragged.csv"), "--output", str(tmp_path / "o.csv"))
    _assert_clean_error(ran, 3, "ragged.csv: cannot be read as CSV", "Expected 66 columns, got 68")
    assert not (tmp_path / "o.csv").exists()


def test_csv_output_quotes_only_what_needs_quotes(tmp_path_factory, tmp_path):
    run = trained("animals", tmp_path_factory)
    plain = _predict(run, run.parent / "test.csv", "--no-probabilities").stdout.splitlines()
    assert plain[0] == "prediction" and plain[1] in ("cat", "dog", "owl")  # no quotes around names or labels
    data = tmp_path / "kept.csv"
    data.write_text(read_output(run.parent / "test.csv").to_pandas().assign(note='say "hi", twice').to_csv(index=False))
    rows = list(__import__("csv").reader(_predict(run, data, "--keep", "note", "--no-probabilities")
                                          .stdout.splitlines()))
    assert rows[0] == ["note", "prediction"] and rows[1][0] == 'say "hi", twice'  # quoted where needed, read back


def test_boolean_feature_columns_read_alike_in_train_evaluate_and_predict(tmp_path):
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    flag = rng.random(120) > 0.5
    level = rng.normal(size=120)
    label = np.where(flag, "on", "off")
    lines = ["flag,level,label"] + [f"{f},{v:.4f},{y}" for f, v, y in zip(flag, level, label)]
    (tmp_path / "bool.csv").write_text("\n".join(lines) + "\n")  # True/False text
    pq.write_table(pa.table({"flag": flag, "level": level, "label": label}), tmp_path / "bool.parquet")
    (tmp_path / "bool.yaml").write_text(textwrap.dedent("""\
        data: {train: bool.csv, validation: null, test: bool.parquet}
        model: {layers: [{type: Dense, units: 2, activation: softmax}]}
        optimizer: {type: adam, learning_rate: 0.05}
        training: {epochs: 20, batch_size: 16}
        """))
    run = tmp_path / "run"
    ran = run_cli("train", tmp_path / "bool.yaml", "--output", run, "--quiet", "--json")
    assert ran.exit_code == 0, ran
    test_accuracy = json.loads(ran.stdout)["metrics"]["test_accuracy"]
    for data in ("bool.csv", "bool.parquet"):
        evaluated = run_cli("evaluate", run, "--data", tmp_path / data, "--json")
        assert evaluated.exit_code == 0, evaluated
        assert json.loads(evaluated.stdout)["metrics"]["accuracy"] == pytest.approx(test_accuracy, abs=1e-6)
        predicted = read_csv_text(_predict(run, tmp_path / data).stdout).column("prediction").to_pylist()
        assert np.mean(np.array(predicted) == label) == pytest.approx(test_accuracy, abs=1e-6)


def test_float_labels_are_written_as_they_read(tmp_path):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(90, 2))
    grade = np.where(x[:, 0] > 0.4, 2.5, np.where(x[:, 0] > -0.4, 1.0, 0.5))
    lines = ["u,v,grade"] + [f"{a:.4f},{b:.4f},{g}" for (a, b), g in zip(x, grade)]
    (tmp_path / "grades.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "grades.yaml").write_text(
        "data: {train: grades.csv, label: grade, validation: null, task: classification}\n"
        "model: {layers: [{type: Dense, units: 3, activation: softmax}]}\ntraining: {epochs: 2}\n")
    run = tmp_path / "run"
    assert run_cli("train", tmp_path / "grades.yaml", "--output", run, "--quiet").exit_code == 0
    assert json.loads((run / "labels.json").read_text()) == [0.5, 1.0, 2.5]
    rows = _predict(run, tmp_path / "grades.csv", "--no-probabilities").stdout.splitlines()
    assert rows[0] == "prediction" and set(rows[1:]) <= {"0.5", "1.0", "2.5"}, rows[:5]
    _predict(run, tmp_path / "grades.csv", "--output", tmp_path / "p.jsonl")
    values = {json.loads(line)["prediction"] for line in (tmp_path / "p.jsonl").read_text().splitlines()}
    assert values <= {0.5, 1.0, 2.5}
    header = _predict(run, tmp_path / "grades.csv").stdout.splitlines()[0]
    assert header == "prediction,prob_0.5,prob_1.0,prob_2.5"
