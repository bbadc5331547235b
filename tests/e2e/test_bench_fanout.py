"""The fan-out benchmark runs end to end at a tiny size, so that it does not rot."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.e2e.servers import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_fanout_benchmark_measures_delivery_and_ingest() -> None:
    command = ["--subscribers", "20", "--rate", "50", "--seconds", "1", "--interval-ms", "100"]
    result = subprocess.run(
        [sys.executable, "-m", "bench.fanout", *command, "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {
        cells[0]: cells[1]
        for line in result.stdout.splitlines()
        if line.startswith("| ")
        and len(cells := [c.strip() for c in line.strip("|").split("|")]) == 2
    }
    assert rows["subscribers connected"] == "20 of 20"
    assert rows["missed the last update / dropped"] == "0 / 0"
    p50, p99 = (int(re.sub(r"\D", "", rows[f"delivery latency {p}"])) for p in ("p50", "p99"))
    assert 0 < p50 <= p99 < 5000
    assert int(rows["liveStats messages received"].replace(",", "")) >= 20
    # Ingest with no subscriber is measured at both ends of the run, each a real figure.
    unloaded = re.search(
        r"flat out: \*\*([\d,]+) events/s\*\* at the start.*?\*\*([\d,]+)\*\*", result.stdout
    )
    assert unloaded is not None, result.stdout
    assert all(int(figure.replace(",", "")) > 0 for figure in unloaded.groups())
