"""A PostgreSQL write that cannot finish (here blocked behind another session's lock on the event
table) is cancelled after ``SEARCHSTATS_DB_WRITE_TIMEOUT_SECONDS``: every door answers 503
``unavailable`` with ``Retry-After``, nothing is written, and once the lock is gone the same
process serves again."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.e2e.faults import sql
from tests.e2e.servers import searchstats_serve
from tests.e2e.test_storage_down import doors, error_code

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

WRITE_TIMEOUT_SECONDS = 1.0
WRITE_DOORS = ("graphql mutation", "doofinder visit", "workplace event", "dspace viewevents")
WAITING_WRITES = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = 'searchstats'
      AND wait_event_type = 'Lock'"""


class TableLock:
    """Another session holding ``LOCK TABLE event IN ACCESS EXCLUSIVE MODE`` until released
    (or for at most ``seconds``), from its own thread."""

    def __init__(self, database_url: str, seconds: float) -> None:
        url = make_url(database_url)
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._seconds = seconds
        self._held = threading.Event()
        self._release: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._hold(),), daemon=True)

    async def _hold(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._release = asyncio.Event()
        connection = await asyncpg.connect(self._dsn)
        try:
            async with connection.transaction():
                await connection.execute("LOCK TABLE event IN ACCESS EXCLUSIVE MODE")
                self._held.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._release.wait(), self._seconds)
        finally:
            await connection.close()

    def __enter__(self) -> TableLock:
        self._thread.start()
        assert self._held.wait(10), "the lock was never taken"
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)
        self._thread.join(15)


def write_doors(key: str, hashid: str) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    return (door for door in doors(key, hashid) if door[0] in WRITE_DOORS)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_write_blocked_behind_a_lock_is_503_then_recovers(
    empty_database_url: str, tmp_path: Path
) -> None:
    env = {
        "SEARCHSTATS_DATABASE_URL": empty_database_url,
        "SEARCHSTATS_SECRET_KEY": "blocked",
        "SEARCHSTATS_DB_WRITE_TIMEOUT_SECONDS": str(WRITE_TIMEOUT_SECONDS),
    }
    with searchstats_serve(env, tmp_path) as served:
        bootstrap = served.bootstrap()
        assert bootstrap is not None, served.output()
        key, hashid = bootstrap
        blocked: dict[str, tuple[int, float]] = {}
        with (
            httpx.Client(base_url=served.base_url, trust_env=False, timeout=30) as http,
            TableLock(empty_database_url, seconds=60),
        ):
            for door, method, path, options in write_doors(key, hashid):
                started = time.monotonic()
                response = http.request(method, path, **options)
                blocked[door] = (response.status_code, time.monotonic() - started)
                assert response.status_code == 503, (door, response.text)
                assert int(response.headers["Retry-After"]) >= 1, door
                assert error_code(door, response.json()) == "unavailable", (door, response.text)
            # Cancelled in the server, not left waiting for the lock.
            assert sql(empty_database_url, WAITING_WRITES)[0][0] == 0
        with httpx.Client(base_url=served.base_url, trust_env=False, timeout=30) as http:
            served_again = {
                door: http.request(method, path, **options).status_code
                for door, method, path, options in write_doors(key, hashid)
            }
        assert served.process.poll() is None, "the server must recover by itself"

    print({door: f"{status} in {seconds:.2f} s" for door, (status, seconds) in blocked.items()})
    for door, (_, seconds) in blocked.items():
        assert seconds < WRITE_TIMEOUT_SECONDS + 3, f"{door} took {seconds:.2f} s to answer 503"
    assert set(served_again) == set(WRITE_DOORS)
    assert set(served_again.values()) <= {200, 201}, served_again
    # Nothing of the refused requests was written; each request served afterwards stored one.
    assert sql(empty_database_url, "SELECT count(*) FROM event")[0][0] == len(WRITE_DOORS)
