"""The benchmarks run end to end at a tiny size, so they do not rot (no timing is asserted)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IN_CI = bool(os.environ.get("CI") or os.environ.get("SEARCHSTATS_TEST_REQUIRE_POSTGRES"))

pytestmark = pytest.mark.e2e


def run_bench(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", *args, "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_ingest_benchmark_runs() -> None:
    if shutil.which("wrk") is None:
        if IN_CI:
            pytest.fail("wrk is required in CI (apt-get install wrk)")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    output = run_bench(
        "bench.ingest", "--seconds", "1", "--connections", "8", "--backends", "sqlite"
    )
    rows = [line for line in output.splitlines() if line.startswith(("| REST", "| GraphQL"))]
    assert len(rows) == 4
    # Every acknowledged event is stored: the last two columns agree or differ only by the
    # requests still in flight when wrk stopped counting (8 connections, up to 100 events each).
    for row in rows:
        acknowledged, stored = (int(c.strip().replace(",", "")) for c in row.split("|")[-3:-1])
        in_flight = 8 * (100 if "recordEvents" in row else 1)
        assert 0 < acknowledged <= stored <= acknowledged + in_flight


def test_stats_benchmark_runs() -> None:
    output = run_bench("bench.stats", "--sizes", "3000", "--backends", "sqlite", "--repeat", "2")
    assert "| sqlite | 3,000 |" in output
