"""`make bench-peers`'s arithmetic and table (bench/peers/peers_run.py): each side's own overhead is its
whole seed-job process minus its framework's import, from the same run, and the target compares
mlcli's with LightningCLI's. No benchmark runs here: the results are made up."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).absolute().parent.parent / "bench" / "peers"))

import peers_run  # noqa: E402


def _results(mlcli_seconds: float) -> dict:
    side = {"seconds": 0.0, "cpu_seconds": 0.0, "peak_rss_mb": 500.0, "test_accuracy": 0.96}
    seed = {"mlcli": {**side, "seconds": mlcli_seconds, "cpu_seconds": 5.0},
            "keras": {**side, "seconds": 6.2, "cpu_seconds": 5.5},
            "lightning": {**side, "seconds": 4.3, "cpu_seconds": 6.0},
            "import_tensorflow": {"seconds": 4.0, "cpu_seconds": 3.5, "peak_rss_mb": 600.0},
            "import_lightning": {"seconds": 2.9, "cpu_seconds": 2.6, "peak_rss_mb": 300.0}}
    seed["overhead_seconds"] = peers_run.overheads(seed)
    seed["overhead_cpu_seconds"] = peers_run.overheads_by(seed, "cpu_seconds")
    results = {"seed": seed, "rounds": 3, "started_at": "2026-12-02T05:00:00Z", "seconds": 600.0,
               "peers": {"torch": "2.13.0+cpu", "lightning": "2.6.6", "threads": 2},
               "machine": {"cpu": "a CPU", "cores": 2, "load_average_at_start": [1.0], "load_average_at_end": [2.0],
                           "versions": {"tensorflow": "2.21.0", "keras": "3.15.1"}, "commit": "abc1234"}}
    results["targets"] = peers_run.targets(results)
    return results


def test_overhead_is_the_whole_process_minus_the_framework_import():
    seed = _results(5.3)["seed"]
    assert seed["overhead_seconds"] == pytest.approx({"mlcli": 1.3, "keras": 2.2, "lightning": 1.4})
    assert seed["overhead_cpu_seconds"] == pytest.approx({"mlcli": 1.5, "keras": 2.0, "lightning": 3.4})


@pytest.mark.parametrize(("mlcli_seconds", "met"), [(5.3, "yes"), (5.5, "**no**")])
def test_the_table_judges_mlcli_against_lightningcli(mlcli_seconds, met):
    results = _results(mlcli_seconds)
    table = peers_run.markdown(results)
    row = next(line for line in table.splitlines() if line.startswith("| own overhead"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1:4] == [f"{mlcli_seconds - 4.0:.2f} s", "2.20 s", "1.40 s"]
    assert cells[-1] == met
    assert results["targets"]["overhead"]["met"] is (met == "yes")
    assert "| 4.00 s | 2.90 s |" in table  # the framework imports
    assert "load average 1.0 at the start and 2.0 at the end" in table
