"""The group commit's batches on a SQLite file take the writer lock that workers share."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from app.services.runtime import Runtime
from app.settings import Settings
from app.storage.batch_commit import store_batch
from app.storage.database import open_database
from app.storage.outages import is_storage_down
from app.storage.sqlite_writer_lock import SqliteWriterLock, writer_lock_for
from tests.api.helpers import engine_id
from tests.conftest import Tenant
from tests.integration.test_batch_commit import plain_events

on_sqlite = pytest.mark.parametrize("backend", ["sqlite"])


@contextmanager
def held_by_another_process(path: Path) -> Iterator[None]:
    """The lock file locked as another worker would hold it: ``flock`` on an open file of its
    own (two open files conflict even within one process)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # lets go of the lock


@on_sqlite
async def test_a_batch_waits_while_another_worker_writes(
    runtime: Runtime, tenant: Tenant, database_url: str
) -> None:
    lock = runtime.database.writer_lock
    assert lock is not None
    assert lock.path == Path(f"{database_url.removeprefix('sqlite+aiosqlite:///')}-writer.lock")
    events = plain_events(await engine_id(runtime, tenant.hashid))

    with held_by_another_process(lock.path):
        writing = asyncio.create_task(store_batch(runtime.database, events))
        await asyncio.sleep(0.3)
        assert not writing.done()
    written = await asyncio.wait_for(writing, timeout=5)

    assert len(written) == len(events)
    assert all(not w.duplicate for w in written)


@on_sqlite
async def test_past_the_busy_timeout_a_batch_fails_as_a_locked_database(
    runtime: Runtime, tenant: Tenant, database_url: str, tmp_path: Path
) -> None:
    """As SQLite's own lock would fail it: the database is down for now (503), not the data."""
    events = plain_events(await engine_id(runtime, tenant.hashid))
    settings = Settings(database_url=database_url, secret_key="x", db_connect_timeout_seconds=0.2)
    database = open_database(settings, pooled=False)
    try:
        assert database.writer_lock is not None
        with held_by_another_process(database.writer_lock.path):
            began = time.monotonic()
            with pytest.raises(OperationalError, match="database is locked") as failed:
                await store_batch(database, events)
            assert time.monotonic() - began < 2
        assert is_storage_down(failed.value)
        assert len(await store_batch(database, events)) == len(events)  # free again
    finally:
        await database.dispose()


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    lock = SqliteWriterLock(str(tmp_path / "db.sqlite"), timeout=5)
    inside, order = threading.Event(), []

    def first() -> None:
        with lock.held():
            inside.set()
            time.sleep(0.2)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait()
    with lock.held():
        order.append("second in")
    thread.join()
    lock.close()
    assert order == ["first done", "second in"]


def test_without_a_lock_file_batches_go_as_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A lock file that cannot be made (here a folder stands in its way) is warned about once;
    the lock then only keeps this process's threads apart."""
    lock = SqliteWriterLock(str(tmp_path / "db.sqlite"), timeout=5)
    lock.path.mkdir()
    for _ in range(2):
        with lock.held():
            pass
    warnings = [r for r in caplog.records if "writer lock file" in r.getMessage()]
    assert len(warnings) == 1


def test_a_database_in_memory_has_no_lock_file(tmp_path: Path) -> None:
    def lock_of(url: str) -> SqliteWriterLock | None:
        return writer_lock_for(Settings(database_url=url, secret_key="x"))

    assert lock_of("sqlite+aiosqlite://") is None
    assert lock_of("sqlite+aiosqlite:///:memory:") is None
    assert lock_of("sqlite+aiosqlite:///file:x?mode=memory&cache=shared&uri=true") is None
    named = lock_of(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    assert named is not None
    assert named.path == tmp_path / "a.db-writer.lock"
    uri = lock_of(f"sqlite+aiosqlite:///file:{tmp_path / 'b.db'}?uri=true")
    assert uri is not None
    assert uri.path == tmp_path / "b.db-writer.lock"


def open_files() -> set[str]:
    return {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}


@on_sqlite
async def test_the_lock_file_is_let_go_of_with_the_database(
    runtime: Runtime, tenant: Tenant
) -> None:
    events = plain_events(await engine_id(runtime, tenant.hashid))
    await store_batch(runtime.database, events)
    lock = runtime.database.writer_lock
    assert lock is not None
    assert lock.path.exists()
    await runtime.database.dispose()
    # No file of this process keeps it open (a held lock would outlive the database).
    assert str(lock.path) not in open_files()
