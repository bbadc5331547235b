"""``searchstats serve --workers 2`` on PostgreSQL: both workers serve, their metrics add up
whichever one answers the scrape, the logs are JSON lines, and SIGTERM stops them all cleanly.
On SQLite: both workers' batches are written, one at a time."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.faults import IngestLoad, outcome, stored_event_ids
from tests.e2e.servers import ROOT, ServeProcess, searchstats_serve

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def backend() -> str:
    """Several worker processes share one database: PostgreSQL."""
    return "postgresql"


def children(pid: int) -> list[int]:
    """The worker processes uvicorn spawned (its multiprocessing children)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in text and b"spawn_main" in cmdline:
            found.append(int(status.parent.name))
    return found


def recorded_total(metrics: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "searchstats_events_recorded_total"
    )


def started_workers(log: str) -> set[str]:
    """The pids of the workers that logged their start (uvicorn: "Started server process [N]")."""
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return {
        r["message"].split("[")[-1].rstrip("]") for r in records if "Started server" in r["message"]
    }


def wait_for_workers(served: ServeProcess, count: int, seconds: float = 60) -> None:
    """A loaded machine can start one worker long after the other: load both, not just one."""
    deadline = time.monotonic() + seconds
    while len(started_workers(served.output())) < count:
        assert time.monotonic() < deadline, served.output()
        time.sleep(0.1)


def test_two_workers_on_postgres(empty_database_url: str, tmp_path: Path) -> None:
    env = {"SEARCHSTATS_DATABASE_URL": empty_database_url, "SEARCHSTATS_SECRET_KEY": "two"}
    with searchstats_serve(env, tmp_path, workers=2) as served:
        bootstrap = served.bootstrap()
        assert bootstrap is not None, served.output()
        workers = children(served.process.pid)
        assert len(workers) == 2, workers
        wait_for_workers(served, 2)
        with IngestLoad(served.base_url, bootstrap[0], clients=8, size=10) as load:
            load.wait_acknowledged(1000)
        stored = stored_event_ids(empty_database_url)
        seen = outcome(load.batches, stored)
        with httpx.Client(base_url=served.base_url, trust_env=False, timeout=10) as http:
            # New connections land on either worker: each scrape must report both.
            totals = {recorded_total(http.get("/metrics").text) for _ in range(10)}
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=20) == 0
        assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
        log = served.output()

    assert (seen.lost, seen.partial_batches, seen.duplicates) == (0, 0, 0)
    assert totals == {float(seen.stored)}
    lines = [line for line in log.splitlines() if line.startswith("{")]
    assert len(lines) > 100
    records = [json.loads(line) for line in lines]
    assert {"time", "level", "logger", "message", "request_id"} <= set(records[0])
    assert started_workers(log) == {str(pid) for pid in workers}
    print(seen.line("2 workers on PostgreSQL") + f"; /metrics reported {totals} on 10 scrapes")


def test_two_workers_on_sqlite_take_turns_to_write(tmp_path: Path) -> None:
    """Both workers commit their batches to one SQLite file, one at a time by its writer lock:
    every batch answered 200 (none refused as a locked database), none lost or half stored."""
    database = tmp_path / "two.db"
    url = f"sqlite+aiosqlite:///{database}"
    env = {"SEARCHSTATS_DATABASE_URL": url, "SEARCHSTATS_SECRET_KEY": "two"}
    with searchstats_serve(env, tmp_path, workers=2) as served:
        bootstrap = served.bootstrap()
        assert bootstrap is not None, served.output()
        wait_for_workers(served, 2)
        with IngestLoad(served.base_url, bootstrap[0], clients=8, size=10) as load:
            load.wait_acknowledged(1000)
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=20) == 0
    seen = outcome(load.batches, stored_event_ids(url))

    assert {status for batch in load.batches for status in batch.statuses} == {200}
    assert (seen.lost, seen.partial_batches, seen.duplicates) == (0, 0, 0)
    assert Path(f"{database}-writer.lock").exists()
    print(seen.line("2 workers on SQLite"))


def test_a_worker_slow_to_start_is_waited_for(tmp_path: Path) -> None:
    """A worker imports the service before it answers uvicorn's health ping (1.5 s on an idle
    core, over 6 s on a busy machine or a CPU-limited container). uvicorn's default of 5 s
    killed such a worker and started another, as slow, again and again ("Child process [N]
    died"): the pool never filled. Here each worker's interpreter takes 7 s to start."""
    slow = tmp_path / "slow_start"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(
        "import sys, time\n"
        "if '--multiprocessing-fork' in sys.argv:  # a worker, not the supervisor\n"
        "    time.sleep(7)\n"
    )
    env = {
        "SEARCHSTATS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'slow.db'}",
        "SEARCHSTATS_SECRET_KEY": "slow",
    }
    wrapper = ("env", f"PYTHONPATH={ROOT}{os.pathsep}{slow}")
    with searchstats_serve(env, tmp_path, workers=2, wrapper=wrapper) as served:
        wait_for_workers(served, 2, seconds=45)
        workers = children(served.process.pid)
        log = served.output()

    assert "died" not in log
    assert started_workers(log) == {str(pid) for pid in workers}
