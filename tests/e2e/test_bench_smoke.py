"""The benchmarks run end to end at a tiny size, so they do not rot (no timing is asserted)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IN_CI = bool(os.environ.get("CI") or os.environ.get("SEARCHSTATS_TEST_REQUIRE_POSTGRES"))

pytestmark = pytest.mark.e2e


def run_bench(*args: str, writes: bool = True) -> str:
    """Run a benchmark module; one that writes its section of the docs is told not to."""
    result = subprocess.run(
        [sys.executable, "-m", *args, *(["--no-write"] if writes else [])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_ingest_benchmark_runs(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        if IN_CI:
            pytest.fail("wrk is required in CI (apt-get install wrk)")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    output = run_bench(
        "bench.ingest",
        "--seconds",
        "1",
        "--connections",
        "8",
        "--backends",
        "sqlite",
        "--prefill",
        "3000",
    )
    rows = [line for line in output.splitlines() if line.startswith(("| REST", "| GraphQL"))]
    doors = [row for row in rows if "| sqlite |" in row and row.count("|") == 11]
    assert len(doors) == 6
    assert any(row.startswith("| REST visit, access log off |") for row in doors)
    assert any(row.startswith("| REST visit (2 workers) |") for row in doors)
    # Where the cores went: each door's server was busy, and no more than the machine has.
    cores = [row for row in rows if "| sqlite |" in row and row.count("|") == 7]
    assert len(cores) == 6
    for row in cores:
        server, _database, load, in_all = (float(c) for c in row.split("|")[3:7])
        assert server > 0, row
        assert load > 0, row
        assert in_all <= (os.cpu_count() or 1) + 0.5, row
    # The prefill table: REST visit and recordEvents, on an empty database and over 3,000 events.
    prefilled = [row for row in rows if row.count("|") == 10]
    assert [row.split("|")[3].strip() for row in prefilled] == ["0", "0", "3,000", "3,000"]
    # Every acknowledged event is stored: the last two columns agree or differ only by the
    # requests still in flight when wrk stopped counting (8 connections, up to 100 events each).
    # The yardsticks that write are held to the same check: the plain Strawberry one's GraphQL
    # errors are 200s too, and the group commit's acknowledgement must mean a committed row.
    yardsticks = [
        line
        for line in output.splitlines()
        if line.startswith(("| plain Strawberry", "| group commit alone")) and line.count("|") == 11
    ]
    assert len(yardsticks) == 2
    for row in [*doors, *prefilled, *yardsticks]:
        acknowledged, stored = (int(c.strip().replace(",", "")) for c in row.split("|")[-3:-1])
        in_flight = 8 * (100 if "100 per request" in row else 1)
        if row in prefilled:
            in_flight *= 2  # two rounds on each database
        assert 0 < acknowledged <= stored <= acknowledged + in_flight, row
    assert "recordEvents events/s ÷ plain Strawberry list input" in output
    assert "REST visit ÷ group commit alone" in output
    # The bare endpoint ran first and last; its row, the yardstick of every ratio, is their mean.
    runs = re.search(r"the mean of the two \(([\d,]+) and ([\d,]+) requests/s\)", output)
    assert runs is not None, output
    first, last = (int(runs[n].replace(",", "")) for n in (1, 2))
    [bare] = [
        line
        for line in output.splitlines()
        if line.startswith("| bare Starlette") and line.count("|") == 11
    ]
    assert abs(int(bare.split("|")[3].strip().replace(",", "")) - (first + last) / 2) <= 1
    # The plots draw from the printed tables.
    (tmp_path / "performance.md").write_text(output)
    plotted = run_plots(tmp_path)
    assert {path.name for path in plotted} == {"ingest-throughput.png", "ingest-latency.png"}


def test_stats_benchmark_runs(tmp_path: Path) -> None:
    output = run_bench("bench.stats", "--sizes", "3000", "--backends", "sqlite", "--repeat", "2")
    assert "| sqlite | 3,000 |" in output
    (tmp_path / "performance.md").write_text(output)
    plotted = run_plots(tmp_path)
    assert {path.name for path in plotted} == {"stats-latency.png"}


def run_plots(folder: Path) -> list[Path]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.plots",
            "--markdown",
            str(folder / "performance.md"),
            "--out",
            str(folder / "img"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    paths = [Path(line) for line in result.stdout.splitlines()]
    assert all(path.stat().st_size > 1000 for path in paths)
    return paths


def test_profile_of_a_door_runs() -> None:
    if shutil.which("wrk") is None:
        if IN_CI:
            pytest.fail("wrk is required in CI (apt-get install wrk)")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    result = subprocess.run(
        [sys.executable, "-m", "bench.profile", "--seconds", "2", "--connections", "8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shares = {
        line.split("|")[1].strip(): float(line.split("|")[2].strip().rstrip("%"))
        for line in result.stdout.splitlines()
        if line.startswith("| ") and line.rstrip().endswith("% |")
    }
    assert shares["app"] > 0  # the service's own code was sampled while it served
    assert "REST visit on sqlite" in result.stdout
    # The group commit's figures come from the server's /metrics: the events it batched.
    batches = re.search(
        r"Group commit meanwhile: ([\d,]+) batches of ([\d.]+) events", result.stdout
    )
    assert batches is not None, result.stdout
    assert int(batches[1].replace(",", "")) > 0
    assert float(batches[2]) >= 1


@pytest.mark.parametrize("door", ["REST visit", "GraphQL recordVisit"])
def test_request_cpu_runs(door: str) -> None:
    sizes = ["--requests", "300", "--clients", "8", "--rounds", "1"]
    output = run_bench("bench.request_cpu", "--door", door, *sizes, writes=False)
    # Both the yardstick and the door served every request (a failed one ends the run).
    figures = re.findall(r"^(.+?): ([\d,.]+) µs CPU a request", output, re.MULTILINE)
    assert [name for name, _ in figures] == ["bare endpoint", door]
    assert all(float(value.replace(",", "")) > 0 for _, value in figures)


def test_compare_of_two_checkouts_runs() -> None:
    if shutil.which("wrk") is None:
        if IN_CI:
            pytest.fail("wrk is required in CI (apt-get install wrk)")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    sizes = ["--rounds", "2", "--seconds", "1", "--connections", "8", "--workers", "2"]
    output = run_bench(
        "bench.compare", "--before", str(ROOT), "--door", "REST visit", *sizes, writes=False
    )
    runs = re.findall(r"^sqlite round (\d) (before|after): REST visit ([\d,]+)", output, re.M)
    # Each round serves both sides, the order reversed in the second.
    assert [(number, side) for number, side, _ in runs] == [
        ("1", "before"),
        ("1", "after"),
        ("2", "after"),
        ("2", "before"),
    ]
    assert all(int(served.replace(",", "")) > 0 for _, _, served in runs)
    assert re.search(
        r"^\| REST visit \| [\d,]+ \| [\d,]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \|$", output, re.M
    )


def test_soak_runs() -> None:
    """A few seconds of every kind of request and subscriber: each answered as it must be (an
    unexpected answer, or an acknowledged event not stored, fails the run), memory sampled."""
    sizes = ["--minutes", "0.1", "--connections", "4", "--sample-seconds", "1"]
    output = run_bench("bench.soak", "--backends", "sqlite", *sizes)
    row = next(line for line in output.splitlines() if line.startswith("| sqlite |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    stored, acknowledged = re.fullmatch(r"([\d,]+) of ([\d,]+) acknowledged", cells[3]).groups()  # type: ignore[union-attr]
    assert stored == acknowledged != "0"
    assert int(cells[4].split()[0].replace(",", "")) > 0  # subscribers came and went
    samples = re.findall(r"^sqlite +[\d.]+ s +([\d,]+) requests +([\d.]+) MB", output, re.M)
    assert len(samples) >= 3
    assert all(float(mb) > 0 for _, mb in samples)
    # Every kind of answer the traffic asks for was given.
    for status in ("200", "201", "400", "401", "404"):
        assert f"{status}: " in cells[9]


def test_forget_benchmark_runs() -> None:
    """Both erasures of a user under writes (the bench itself fails when an event of the user is
    left or an acknowledged write is not stored)."""
    output = run_bench("bench.forget", "--events", "1200", "--backends", "sqlite")
    rows = [line for line in output.splitlines() if line.startswith("| sqlite |")]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    assert [row[2] for row in cells] == ["one transaction", "rounds of 500"]
    assert [row[3] for row in cells] == ["1,200", "1,200"]  # every event of the user erased
