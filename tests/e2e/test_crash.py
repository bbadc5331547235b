"""``kill -9`` during concurrent ingestion: nothing acknowledged is lost, no batch is half-stored,
the database is intact, and clients resending with the same eventIds create no duplicates."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.e2e.faults import (
    IngestLoad,
    outcome,
    resend_unacknowledged,
    sqlite_integrity,
    stored_event_ids,
)
from tests.e2e.servers import searchstats_serve

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_kill_9_loses_no_acknowledged_event(
    backend: str, empty_database_url: str, tmp_path: Path
) -> None:
    env = {"SEARCHSTATS_DATABASE_URL": empty_database_url, "SEARCHSTATS_SECRET_KEY": "crash"}
    with searchstats_serve(env, tmp_path, name="doomed") as doomed:
        bootstrap = doomed.bootstrap()
        assert bootstrap is not None, doomed.output()
        key = bootstrap[0]
        with IngestLoad(doomed.base_url, key, clients=12, size=10) as load:
            load.wait_acknowledged(1500)
            doomed.process.send_signal(signal.SIGKILL)
            assert doomed.process.wait(timeout=10) == -signal.SIGKILL
        batches = load.batches

    if backend == "sqlite":
        path = empty_database_url.removeprefix("sqlite+aiosqlite:///")
        assert sqlite_integrity(path) == "ok"
    after_crash = outcome(batches, stored_event_ids(empty_database_url))
    print(after_crash.line(f"kill -9 ({backend}), after the crash"))
    assert after_crash.acknowledged >= 1500
    assert after_crash.lost == 0
    assert after_crash.partial_batches == 0
    assert after_crash.duplicates == 0
    assert after_crash.sent > after_crash.acknowledged  # the kill did interrupt some batches

    with searchstats_serve(env, tmp_path, name="restarted") as restarted:
        resent = resend_unacknowledged(restarted.base_url, key, batches)
    final = outcome(batches, stored_event_ids(empty_database_url))
    print(final.line(f"kill -9 ({backend}), after resending {resent} batches"))
    assert final.stored == final.sent == final.acknowledged
    assert (final.lost, final.partial_batches, final.duplicates) == (0, 0, 0)
