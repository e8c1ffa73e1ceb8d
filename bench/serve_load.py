"""`mlcli serve` under load, against a naive FastAPI server calling model.predict per request
(bench/serve_naive.py), on loopback only (docs/contract.md §9).

Trains the seed model (configs/digits.yaml) once, starts each server as its own process on a free
127.0.0.1 port, and drives it from another process (this script with --client: httpx.AsyncClient,
C requests at a time, one digits test row each). Per concurrency 1, 16 and 64: requests/s and p50/p99
latency, each level bounded in requests and seconds. Then 10,000 requests at concurrency 64 to the
mlcli server: every one must answer 200 with the right prediction, and the server's RSS, sampled
after each 1,000, must stay flat (the last within 10% of the first, after warm-up).

Targets: at concurrency 64, mlcli serve >= 3x the naive throughput; 10,000 requests, no error,
memory flat.

    python bench/serve_load.py [--requests 2000] [--seconds 30] [--soak 10000]

Prints a table and writes bench/results/serve_load.json; bench/run.py runs it as `serve`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).absolute().parent))
import common  # noqa: E402  (bench/common.py: the environment every measured process gets)

REPO = Path(__file__).absolute().parent.parent
RESULTS = REPO / "bench" / "results" / "serve_load.json"
CONCURRENCY = (1, 16, 64)
TARGET_SPEEDUP = 3.0
MEMORY_TOLERANCE = 0.10


# ---- the client (its own process) ---------------------------------------------------------------

async def _drive(url: str, rows: list[dict], concurrency: int, requests: int, seconds: float,
                 expected: list | None) -> dict:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    sent = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        async def worker() -> None:
            nonlocal sent
            while sent < requests and time.perf_counter() < deadline:
                index = sent % len(rows)
                sent += 1
                started = time.perf_counter()
                try:
                    answer = await client.post("/v1/models/digits:predict", json={"instances": [rows[index]]})
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                latencies.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    errors.append(f"{answer.status_code}: {answer.text[:200]}")
                elif expected is not None and answer.json()["predictions"][0]["prediction"] != expected[index]:
                    errors.append(f"row {index}: predicted {answer.json()['predictions'][0]['prediction']}, "
                                  f"predict says {expected[index]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {"concurrency": concurrency, "requests": len(latencies), "seconds": elapsed,
            "requests_per_second": len(latencies) / elapsed, "p50_ms": 1000 * quantile(0.50),
            "p99_ms": 1000 * quantile(0.99), "errors": len(errors), "first_errors": errors[:5]}


def client_main(args) -> None:
    rows = json.loads(Path(args.rows).read_text())
    expected = json.loads(Path(args.expected).read_text()) if args.expected else None
    print(json.dumps(asyncio.run(_drive(args.client, rows, args.concurrency, args.requests, args.seconds,
                                        expected))))


# ---- the orchestra ---------------------------------------------------------------------------------

def _client(url: str, rows: Path, concurrency: int, requests: int, seconds: float, expected: Path | None) -> dict:
    command = [sys.executable, __file__, "--client", url, "--rows", str(rows), "--concurrency", str(concurrency),
               "--requests", str(requests), "--seconds", str(seconds)]
    if expected is not None:
        command += ["--expected", str(expected)]
    done = subprocess.run(command, env=common.env(), capture_output=True, text=True, check=True,
                          timeout=seconds + 120)
    return json.loads(done.stdout.strip().splitlines()[-1])


class Server:
    """A server process on a free loopback port; its URL from its startup line on stderr."""

    def __init__(self, command: list[str]):
        self.process = subprocess.Popen(command, env=common.env(), cwd=REPO, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.url = self._url()

    def _url(self, limit: float = 180) -> str:
        deadline, seen = time.monotonic() + limit, []
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                raise RuntimeError(f"server ended before serving: {''.join(seen)[-3000:]}")
            seen.append(line)
            match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
            if match:
                return match.group(1)
        raise RuntimeError("no startup line")

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(60)
        finally:
            if self.process.poll() is None:
                self.process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="at most this many requests per level")
    parser.add_argument("--seconds", type=float, default=30, help="at most this long per level")
    parser.add_argument("--soak", type=int, default=10_000, help="requests of the memory and error check")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--rows", help=argparse.SUPPRESS)
    parser.add_argument("--expected", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return
    print(json.dumps(run_all(args.requests, args.seconds, args.soak), indent=2))


def run_all(requests: int = 2000, seconds: float = 30, soak: int = 10_000) -> dict:
    import pyarrow.csv as pacsv

    work = REPO / "bench" / "results" / "serve"
    work.mkdir(parents=True, exist_ok=True)
    run_dir = work / "digits"
    mlcli = common.mlcli_command()
    common.run([*mlcli, "train", str(REPO / "configs" / "digits.yaml"), "--output", str(run_dir), "--force",
                "--quiet"])
    test = pacsv.read_csv(REPO / "mlcli" / "datasets" / "digits_test.csv.gz")
    rows_path = work / "rows.json"
    rows_path.write_text(json.dumps(test.drop(["label"]).to_pylist()))
    common.run([*mlcli, "predict", str(run_dir), str(REPO / "mlcli" / "datasets" / "digits_test.csv.gz"),
                "--output", str(work / "expected.csv"), "--no-probabilities"])
    expected_path = work / "expected.json"
    expected_path.write_text(json.dumps(pacsv.read_csv(work / "expected.csv").column("prediction").to_pylist()))

    result: dict = {"run": str(run_dir.relative_to(REPO)), "budget": {"requests": requests, "seconds": seconds},
                    "levels": {}}
    servers = {"mlcli": [*mlcli, "serve", str(run_dir), "--port", "0"],
               "naive": [sys.executable, str(REPO / "bench" / "serve_naive.py"), str(run_dir)]}
    for side, command in servers.items():
        server = Server(command)
        try:
            _client(server.url, rows_path, 4, 50, seconds, None)  # warm-up: traced functions, connections
            levels = result["levels"][side] = {}
            for c in CONCURRENCY:
                before = _batches(server.url) if side == "mlcli" else None
                levels[str(c)] = _client(server.url, rows_path, c, requests, seconds, expected_path)
                if before is not None:  # rows per model call at this level, from the server's /metrics
                    calls, rows = (a - b for a, b in zip(_batches(server.url), before))
                    levels[str(c)]["model_calls"], levels[str(c)]["rows_per_call"] = calls, rows / max(calls, 1)
            if side == "mlcli":
                result["soak"] = _soak(server, rows_path, expected_path, soak)
        finally:
            result.setdefault("exit_codes", {})[side] = server.stop()
    levels = result["levels"]
    result["speedup"] = {str(c): levels["mlcli"][str(c)]["requests_per_second"]
                         / levels["naive"][str(c)]["requests_per_second"] for c in CONCURRENCY}
    soaked = result["soak"]
    result["targets"] = {
        "speedup_at_64": {"value": result["speedup"]["64"], "target": TARGET_SPEEDUP,
                          "met": result["speedup"]["64"] >= TARGET_SPEEDUP},
        "soak_no_errors": {"value": soaked["errors"], "requests": soaked["requests"],
                           "met": soaked["errors"] == 0 and soaked["requests"] == soak},
        "memory_flat": {"value": soaked["rss_growth"], "target": MEMORY_TOLERANCE,
                        "met": soaked["rss_growth"] <= MEMORY_TOLERANCE},
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result), file=sys.stderr)
    return result


def _batches(url: str) -> tuple[float, float]:
    """(model calls, rows) so far, from the server's /metrics."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=60).text
    found = {name: float(value) for name, value in re.findall(r"^(mlcli_batch_size_(?:count|sum)) (\S+)$", text,
                                                              flags=re.MULTILINE)}
    return found["mlcli_batch_size_count"], found["mlcli_batch_size_sum"]


def _soak(server: Server, rows: Path, expected: Path, total: int, step: int = 1000) -> dict:
    """`total` requests at concurrency 64, in steps of `step`, the server's RSS after each step."""
    rss, errors, answered, seconds, first_errors = [server.rss_mb()], 0, 0, 0.0, []
    for _ in range(total // step):
        part = _client(server.url, rows, 64, step, 600, expected)
        errors += part["errors"]
        first_errors += part["first_errors"][:5 - len(first_errors)]
        answered += part["requests"]
        seconds += part["seconds"]
        rss.append(server.rss_mb())
    # The first step warms allocators and caches; flat means the later steps do not keep growing.
    growth = rss[-1] / rss[1] - 1
    return {"requests": answered, "errors": errors, "first_errors": first_errors, "seconds": seconds, "rss_mb": rss,
            "rss_growth": growth}


def table(result: dict) -> str:
    lines = ["| concurrency | mlcli serve req/s | p50 ms | p99 ms | rows/model call | naive req/s | p50 ms | p99 ms "
             "| speedup |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in CONCURRENCY:
        m, n = result["levels"]["mlcli"][str(c)], result["levels"]["naive"][str(c)]
        lines.append(f"| {c} | {m['requests_per_second']:.0f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | "
                     f"{m.get('rows_per_call', float('nan')):.1f} | "
                     f"{n['requests_per_second']:.0f} | {n['p50_ms']:.1f} | {n['p99_ms']:.1f} | "
                     f"{result['speedup'][str(c)]:.1f}x |")
    soaked = result["soak"]
    lines.append("")
    lines.append(f"soak: {soaked['requests']:,} requests at concurrency 64, {soaked['errors']} error(s), server RSS "
                 + " -> ".join(f"{v:.0f}" for v in soaked["rss_mb"]) + f" MB (growth after warm-up "
                 f"{100 * soaked['rss_growth']:+.1f}%)" + (f"; first errors: {soaked['first_errors']}"
                                                           if soaked["errors"] else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
