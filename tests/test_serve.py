"""mlcli serve (docs/contract.md §9): predictions equal `mlcli predict`'s for the same rows (numeric,
typed with missing values, several regression targets); concurrent requests share model calls; bad
requests are 400/404/413 naming the problem and never hurt the server (a seeded fuzz); CKPT and port
errors are the CLI's exit codes; SIGTERM answers every request in flight and exits 0.

The routes run in-process (the ASGI app, with its lifespan, through httpx); a real process only for
the port, SIGTERM and real HTTP."""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli
from evalpredict_runs import digits_table, read_output, trained, write_csv

pytestmark = pytest.mark.slow
TOLERANCE = 1e-6


# ---- helpers ------------------------------------------------------------------------------------

def make_app(run: Path, **options):
    from mlcli.checkpoint.checkpoint import open_checkpoint
    from mlcli.serve.app import create_app
    from mlcli.serve.model import ServedModel

    return create_app(ServedModel.load(open_checkpoint(run), None, unsafe=False), **options)


def call(app, requests: list[tuple[str, str, object]]) -> list:
    """Send (method, path, body) requests to the app all at once; body: a dict (JSON), bytes, or
    Chunked(bytes) (sent without a Content-Length)."""
    import httpx

    def content(body):
        if isinstance(body, Chunked):
            async def chunks():
                yield bytes(body)
            return {"content": chunks()}
        return {"content": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                sends = [client.request(method, path, **content(body)) for method, path, body in requests]
                return await asyncio.gather(*sends)

    return asyncio.run(main())


class Chunked(bytes):
    pass


def predict_csv(run: Path, table, tmp_path: Path):
    """What `mlcli predict RUN rows.csv --output out.csv` writes for `table`."""
    source = write_csv(table, tmp_path / "rows.csv")
    ran = run_cli("predict", run, source, "--output", tmp_path / "out.csv")
    assert ran.exit_code == 0, ran
    return read_output(tmp_path / "out.csv").to_pylist()


def assert_same(served: list[dict], written: list[dict]) -> None:
    assert len(served) == len(written)
    for got, want in zip(served, written):
        assert list(got) == list(want)
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, abs=TOLERANCE), key
            else:
                assert str(got[key]) == str(value), key


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return trained("digits", tmp_path_factory)


@pytest.fixture(scope="module")
def rows():
    return digits_table().slice(0, 40).drop(["label"])


@pytest.fixture(scope="module")
def digits_app(digits):
    return make_app(digits)


# ---- one inference path ---------------------------------------------------------------------------

def test_numeric_rows_get_what_predict_writes_in_both_shapes(digits, digits_app, rows, tmp_path):
    written = predict_csv(digits, rows, tmp_path)
    by_rows, by_columns, status, metadata = call(digits_app, [
        ("POST", "/v1/models/tiny:predict", {"instances": rows.to_pylist()}),
        ("POST", "/v1/models/tiny:predict", {"inputs": rows.to_pydict()}),
        ("GET", "/v1/models/tiny", None),
        ("GET", "/v1/models/tiny/metadata", None)])
    assert by_rows.status_code == 200, by_rows.text
    assert_same(by_rows.json()["predictions"], written)
    assert by_columns.json() == by_rows.json()
    assert status.json()["model_version_status"][0]["state"] == "AVAILABLE"
    meta = metadata.json()["metadata"]
    manifest = json.loads((digits / "run.json").read_text())
    assert meta["features"][0] == {"name": "pixel_0_0", "type": "numeric"} and len(meta["features"]) == 64
    assert meta["classes"] == list(range(10))
    assert meta["config_hash"] == manifest["config_hash"] and meta["versions"] == manifest["versions"]


def test_typed_rows_with_missing_values_get_what_predict_writes(tmp_path_factory, tmp_path):
    import pyarrow as pa
    from test_typed_features import mixed_rows, train

    folder = tmp_path_factory.mktemp("typed")
    ran, run = train(folder, epochs=3)
    assert ran.exit_code == 0, ran
    rows = mixed_rows(24, seed=5)
    # Missing values: empty in the CSV; null in JSON, or (row 5) the column left out of the row.
    rows[1]["charges"], rows[2]["region"], rows[3]["plan"], rows[4]["region"] = "", "", "", ""
    for row in rows:
        del row["label"]
    columns = {name: [r[name] for r in rows] for name in rows[0]}
    written = predict_csv(run, pa.table(columns), tmp_path)
    instances = [{k: (None if v == "" else float(v) if k == "charges" else v == "true" if k == "auto_pay" else v)
                  for k, v in row.items() if k != "id"} for row in rows]
    del instances[4]["region"]  # a column a row leaves out is missing in that row
    # All the rows in one request, and each row alone (concurrent: batched together; a row alone has
    # columns of nulls only — and names each column: one left out of every row is a missing column).
    singles = [[dict(row, region=row.get("region"))] for row in instances]
    answer, *alone = call(make_app(run), [("POST", "/v1/models/mixed:predict", {"instances": rows})
                                          for rows in [instances, *singles]])
    assert answer.status_code == 200, answer.text
    assert_same(answer.json()["predictions"], written)
    assert [a.status_code for a in alone] == [200] * len(alone), [a.text for a in alone if a.status_code != 200]
    assert_same([a.json()["predictions"][0] for a in alone], written)


def test_several_regression_targets_get_what_predict_writes(tmp_path_factory, tmp_path):
    import pyarrow as pa

    run = trained("two_targets", tmp_path_factory)
    rng = np.random.default_rng(9)
    table = pa.table({name: rng.normal(size=10) for name in "abc"})
    written = predict_csv(run, table, tmp_path)
    (answer,) = call(make_app(run), [("POST", "/v1/models/two:predict", {"inputs": table.to_pydict()})])
    assert list(answer.json()["predictions"][0]) == ["prediction_up", "prediction_down"]
    assert_same(answer.json()["predictions"], written)


# ---- batching -------------------------------------------------------------------------------------

def test_concurrent_requests_share_model_calls_and_each_gets_its_rows(digits, rows, tmp_path):
    written = predict_csv(digits, rows, tmp_path)
    app = make_app(digits, max_batch=64, batch_timeout_ms=200)
    instances = rows.to_pylist()
    bad = {"instances": [instances[0], dict(instances[1], pixel_3_3=None)]}  # batched with the others
    answers = call(app, [("POST", "/v1/models/tiny:predict", {"instances": [row]}) for row in instances[:20]]
                   + [("POST", "/v1/models/tiny:predict", bad)]
                   + [("POST", "/v1/models/tiny:predict", {"instances": [row]}) for row in instances[20:]])
    refused = answers.pop(20)
    assert refused.status_code == 400 and "column 'pixel_3_3', row 2: missing" in refused.json()["error"]
    for answer, want in zip(answers, written):
        assert_same(answer.json()["predictions"], [want])
    (text,) = [a.text for a in call(app, [("GET", "/metrics", None)])]
    calls, batched_rows = metric(text, "mlcli_batch_size_count"), metric(text, "mlcli_batch_size_sum")
    assert batched_rows == len(instances) + 2
    assert calls < len(instances) / 4, f"{len(instances)} concurrent requests took {calls} model calls"
    assert metric(text, 'mlcli_requests_total{code="200",endpoint="predict"}') == len(instances)
    assert metric(text, 'mlcli_request_errors_total{code="400",endpoint="predict"}') == 1


def test_a_batch_never_holds_more_than_max_batch_rows(digits, rows):
    app = make_app(digits, max_batch=4, batch_timeout_ms=200)
    answers = call(app, [("POST", "/v1/models/tiny:predict", {"instances": [row]}) for row in rows.to_pylist()[:16]])
    assert [a.status_code for a in answers] == [200] * 16
    (text,) = [a.text for a in call(app, [("GET", "/metrics", None)])]
    calls = metric(text, "mlcli_batch_size_count")
    assert metric(text, 'mlcli_batch_size_bucket{le="4.0"}') == calls >= 4


# ---- bad requests ---------------------------------------------------------------------------------

def _bad_bodies(row: dict) -> list:
    wrong = dict(row, pixel_2_3="dark")
    missing = {k: v for k, v in row.items() if k != "pixel_7_7"}
    return [
        ({"instances": [row, wrong]}, 400, "column 'pixel_2_3', row 2: 'dark' is not a number"),
        ({"instances": [missing]}, 400, "'pixel_7_7' not found"),
        ({"instances": [dict(row, colour=1)]}, 400, "unknown column(s) 'colour'"),
        ({"instances": []}, 400, '"instances" is empty'),
        ({"inputs": {"pixel_0_0": [1, 2], "pixel_0_1": [1]}}, 400, "column 'pixel_0_1' has 1 value(s)"),
        ({"instances": [dict(row, pixel_0_1=[1, 2])]}, 400, "column 'pixel_0_1', row 1: a JSON list"),
        ({"instances": [dict(row, pixel_0_1=None)]}, 400, "column 'pixel_0_1', row 1: missing"),
        ({"instances": [dict(row, pixel_0_1=1e300)]}, 400, "column 'pixel_0_1', row 1: inf"),
        ({"rows": [row]}, 400, "unknown key 'rows'"),
        (b'{"instances": [', 400, "not valid JSON"),
        (b'{"instances": [{"pixel_0_0": NaN}]}', 400, "NaN is not a JSON value"),
        (b"\xff\xfe", 400, "not valid JSON"),
        (b"[" * 100_000, 400, "not valid JSON"),
        ({"instances": [dict(row, pixel_0_1={"b64": "aGVsbG8="})]}, 400, "column 'pixel_0_1' holds {\"b64\": ...}"),
        ({"instances": [dict(row, pixel_0_1="x" * 100_000)]}, 400, "column 'pixel_0_1', row 1: 'xxxx"),
    ]


def test_bad_requests_are_400_naming_the_problem(digits_app, rows):
    row = rows.to_pylist()[0]
    cases = _bad_bodies(row)
    answers = call(digits_app, [("POST", "/v1/models/tiny:predict", body) for body, _, _ in cases])
    for (body, status, text), answer in zip(cases, answers):
        assert answer.status_code == status, (body if not isinstance(body, bytes) else body[:40], answer.text)
        assert text in answer.json()["error"] and len(answer.json()["error"]) < 2100, answer.text[:300]


def test_unknown_model_is_404_and_a_body_over_the_limit_is_413(digits, rows):
    app = make_app(digits, max_body=4096)
    body = {"instances": rows.to_pylist()}  # ~20 KB
    big, chunked, unknown, fine = call(app, [
        ("POST", "/v1/models/tiny:predict", body),
        ("POST", "/v1/models/tiny:predict", Chunked(json.dumps(body).encode())),
        ("POST", "/v1/models/other:predict", {"instances": rows.to_pylist()[:1]}),
        ("POST", "/v1/models/tiny:predict", {"instances": rows.to_pylist()[:1]})])
    assert big.status_code == 413 and "the limit is 4,096 bytes" in big.json()["error"]
    assert chunked.status_code == 413  # no Content-Length: counted as it arrives
    assert unknown.status_code == 404 and "this server serves 'tiny'" in unknown.json()["error"]
    assert fine.status_code == 200


def _fuzzed(rng: random.Random, row: dict) -> bytes:
    """A malformed predict body: a valid one with a part broken, or junk."""
    valid = json.dumps({"instances": [row]})
    junk = [None, True, -1, 1e308, "x" * rng.randint(0, 50), [], {}, [[1]], {"b64": "%%%"}, {"b64": 3}]
    kind = rng.randrange(8)
    if kind == 0:  # truncated
        return valid[:rng.randrange(len(valid))].encode()
    if kind == 1:  # a byte flipped
        data = bytearray(valid.encode())
        data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 2:  # a value of the wrong kind
        broken = dict(row, **{rng.choice(list(row)): rng.choice(junk)})
        return json.dumps({"instances": [broken]}).encode()
    if kind == 3:  # the wrong container
        return json.dumps({rng.choice(["instances", "inputs", "x"]): rng.choice(junk)}).encode()
    if kind == 4:  # a row that is not an object
        return json.dumps({"instances": [rng.choice(junk), row]}).encode()
    if kind == 5:  # columns of different lengths, or not lists
        return json.dumps({"inputs": {k: [v] * rng.randint(0, 2) for k, v in list(row.items())[:5]}}).encode()
    if kind == 6:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    return ("[" * rng.randint(1, 5000) + "]" * rng.randint(0, 5)).encode()


def test_fuzzed_bodies_never_hurt_the_server(digits_app, rows, digits, tmp_path):
    rng = random.Random(19)
    row = rows.to_pylist()[0]
    bodies = [_fuzzed(rng, row) for _ in range(300)]
    answers = call(digits_app, [("POST", "/v1/models/tiny:predict", body) for body in bodies]
                   + [("POST", "/v1/models/tiny:predict", {"instances": rows.to_pylist()})])
    *fuzzed, last = answers
    statuses = [a.status_code for a in fuzzed]
    assert set(statuses) <= {200, 400}, sorted(set(statuses))
    assert statuses.count(400) >= 250
    assert all(a.json()["error"] for a in fuzzed if a.status_code == 400)
    assert_same(last.json()["predictions"], predict_csv(digits, rows, tmp_path))


# ---- the command --------------------------------------------------------------------------------

def test_bad_checkpoint_is_exit_2_and_a_taken_port_exit_4(digits, tmp_path):
    ran = run_cli("serve", tmp_path / "nothing")
    assert ran.exit_code == 2 and "CKPT" in ran.stderr and "not found" in ran.stderr, ran
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = run_cli("serve", digits, "--port", str(port))
    assert ran.exit_code == 4, ran
    assert f"127.0.0.1:{port} is already in use" in ran.stderr and "Traceback" not in ran.stderr
    ran = run_cli("serve", digits, "--name", "a/b")
    assert ran.exit_code == 2 and "--name" in ran.stderr


def test_sigterm_answers_every_request_in_flight_and_exits_0(digits, rows, tmp_path):
    import httpx

    env_path = str(REPO)
    process = subprocess.Popen(
        [sys.executable, "-m", "mlcli", "serve", str(digits), "--port", "0", "--batch-timeout-ms", "3000",
         "--max-batch", "1000", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env={**_env(), "PYTHONPATH": env_path})
    try:
        url = _wait_for_url(process)
        assert url.startswith("http://127.0.0.1:")
        instances = rows.to_pylist()[:8]
        with httpx.Client() as client:
            assert client.get(f"{url}/healthz").json()["status"] == "ok"
        answers: list = [None] * len(instances)
        clients = [httpx.Client(timeout=60) for _ in instances]

        def send(i):
            answers[i] = clients[i].post(f"{url}/v1/models/tiny:predict", json={"instances": [instances[i]]})

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(instances))]
        for thread in threads:
            thread.start()
        _wait_for_in_flight(url, len(instances))  # every request is in, waiting 3 s for its batch to fill
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(60)
        started = time.monotonic()
        code = process.wait(30)
        stderr = process.stderr.read()
        stdout = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0, stderr
    # --json: one document, written once the address could be used (a script reads --port 0's port here)
    assert json.loads(stdout) == {"status": "serving", "url": url, "name": "tiny", "checkpoint": str(digits / "model.keras"),
                                  "predict_url": f"{url}/v1/models/tiny:predict"}, stdout
    assert time.monotonic() - started < 30
    assert [a.status_code for a in answers] == [200] * len(instances), stderr
    assert_same([a.json()["predictions"][0] for a in answers], predict_csv(digits, rows.slice(0, 8), tmp_path))
    assert "stopped (SIGTERM)" in stderr and "Traceback" not in stderr, stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz")


def _wait_for_in_flight(url: str, count: int, limit: float = 20) -> None:
    import httpx

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if metric(httpx.get(f"{url}/metrics").text, "mlcli_predict_requests_in_flight") == count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} requests were not in flight within {limit}s")


def _env() -> dict:
    import os

    return dict(os.environ)


def _wait_for_url(process: subprocess.Popen, limit: float = 120) -> str:
    """The URL of the startup line (`serving 'tiny' (...) on http://127.0.0.1:PORT — ...`)."""
    deadline = time.monotonic() + limit
    lines = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            raise AssertionError(f"mlcli serve ended before serving: {''.join(lines)}")
        lines.append(line)
        match = re.search(r" on (http://\S+) ", line)
        if match and line.startswith("serving"):
            return match.group(1)
    raise AssertionError(f"no startup line within {limit}s: {''.join(lines)}")
