"""A write batch stored and committed in one hand-off to the database.

Under load a batch's commit takes its wall time in event-loop turns, not in the database: each
statement's answer waits until the busy loop gets back to the batch. So every batch goes in one
hand-off: on SQLite one function run on the connection's own thread, from BEGIN to COMMIT; on
PostgreSQL one statement of data-modifying ``WITH`` steps, which is its own transaction: for a
plain batch (no eventId to look up, nothing to link to a search: what the single-event doors
mostly send) the insert and the rollup upserts; for any other the eventId lookup, the links to
searches and the searches marked clicked too, sent by asyncpg itself
(``app.storage.asyncpg_statements``). Both store what ``write_batch`` stores; it still
writes, on PostgreSQL, a batch whose eventId a concurrent batch stored after it looked, and a
bulk import's batches.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.storage import batch_postgresql, rollups
from app.storage.batch_plan import names_search, plan
from app.storage.batch_sqlite import on_sqlite_thread, store_on_sqlite, store_plain_on_sqlite
from app.storage.database import Database, let_go
from app.storage.sqlite_writer_lock import SqliteWriterLock
from app.storage.writes import (
    COPY_ROWS,
    NewEvent,
    RollupKey,
    Written,
    count_new_event,
    write_batch,
)


class HeldConnection:
    """The group commit's own write connection, kept from one batch to the next.

    Checked out of the pool for each batch, a connection costs the batch one more turn of the
    busy event loop: on SQLite the pool's reset (a rollback on aiosqlite's thread) when it is
    returned, before the batch's requests are answered; on PostgreSQL the pool's ping before
    the statement (measured: the REST doors' throughput 9 to 18% lower). One that PostgreSQL
    closed (a restart), which asyncpg knows of, is let go of before the next batch, which takes
    a fresh one, pinged, from the pool; after a failure it is given back, and the next batch
    takes another. After a failure of the database itself it is thrown away, not pooled
    again (``let_go``): one opened while the database was read-only (a SQLite file the process
    could not write, a PostgreSQL standby) would refuse every batch after the database takes
    writes again.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._conn: AsyncConnection | None = None
        self._driver: Any = None

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        if self._conn is not None and self._closed_by_server():
            await self.close()
        if self._conn is None:
            self._conn = await self._database.writes.connect()
            self._driver = (await self._conn.get_raw_connection()).driver_connection
        try:
            yield self._conn
        except BaseException as error:
            await self.close(error)
            raise

    @contextlib.asynccontextmanager
    async def driver(self) -> AsyncIterator[Any]:
        """The driver's own connection (aiosqlite's, asyncpg's) of ``connection``."""
        async with self.connection():
            yield self._driver

    def _closed_by_server(self) -> bool:
        # SQLite's connection is a file this process alone closes.
        return not self._database.is_sqlite and bool(self._driver.is_closed())

    async def close(self, error: BaseException | None = None) -> None:
        """Let go of the connection; ``error``, the failure it is let go of after."""
        conn, self._conn, self._driver = self._conn, None, None
        if conn is not None:
            await let_go(self._database, conn, error)


ConnectDriver = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


async def store_batch(
    database: Database, events: Sequence[NewEvent], *, held: HeldConnection | None = None
) -> list[Written]:
    """Store the events atomically and commit; one outcome per event, in order.

    ``held``: the connection batches are written on (else one of the pool's).
    """
    connect: ConnectDriver = held.driver if held is not None else _pooled_driver(database)
    plain = is_plain(events)
    if database.is_sqlite:
        lock = database.writer_lock
        if plain:
            return await _store_plain_on_sqlite(connect, lock, events)
        async with connect() as driver:
            return await on_sqlite_thread(driver, store_on_sqlite, lock, events, plan(events))
    if plain:
        return await _store_plain_on_postgresql(connect, events)
    if len(events) < COPY_ROWS:
        return await _store_on_postgresql(database, connect, events)
    # A bulk import's batch: its round trips are few for its size, and write_batch sends only
    # the eventIds to look up, then only the new rows (by COPY), where the one statement would
    # send every row, duplicates too (a file imported again: 106 ms a batch of 5,000 instead of
    # 60, timed in-process).
    return await _write_statement_by_statement(database, events)


def _pooled_driver(database: Database) -> ConnectDriver:
    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Any]:
        conn = await database.writes.connect()
        try:
            yield (await conn.get_raw_connection()).driver_connection
        except BaseException as error:
            await let_go(database, conn, error)
            raise
        await conn.close()

    return connect


async def _store_on_postgresql(
    database: Database, connect: ConnectDriver, events: Sequence[NewEvent]
) -> list[Written]:
    try:
        async with connect() as driver:
            return await batch_postgresql.store(driver, events, plan(events))
    except IntegrityError as error:
        if not batch_postgresql.is_lost_race(error):
            raise
    # A concurrent batch stored one of the eventIds after this one looked: nothing was written.
    # write_batch's statements, each seeing what committed before it, answer it as a duplicate.
    return await _write_statement_by_statement(database, events)


async def _write_statement_by_statement(
    database: Database, events: Sequence[NewEvent]
) -> list[Written]:
    async with database.writes.connect() as conn:
        # The write pool's connections autocommit (app/storage/database.py): these statements
        # need a transaction of their own.
        await conn.execution_options(isolation_level="READ COMMITTED")
        async with conn.begin():
            return await write_batch(conn, events)


def is_plain(events: Sequence[NewEvent]) -> bool:
    """No event has an eventId to look up, none a queryId to link to its search."""
    return all(event.event_id is None and not names_search(event) for event in events)


async def _store_plain_on_postgresql(
    connect: ConnectDriver, events: Sequence[NewEvent]
) -> list[Written]:
    rows, amounts = _plain_rows(events)
    async with connect() as driver:
        ids = await batch_postgresql.store_plain(driver, rows, amounts)
    return [Written(row_id, False, e.query_id) for row_id, e in zip(ids, events, strict=True)]


async def _store_plain_on_sqlite(
    connect: ConnectDriver, lock: SqliteWriterLock | None, events: Sequence[NewEvent]
) -> list[Written]:
    rows, amounts = _plain_rows(events)
    arrays = rollups.sqlite_amount_arrays(amounts)
    text = orjson.dumps(rows).decode()
    async with connect() as driver:
        last = await on_sqlite_thread(driver, store_plain_on_sqlite, lock, text, len(rows), arrays)
    first = last - len(rows) + 1
    return [Written(first + n, False, event.query_id) for n, event in enumerate(events)]


def _plain_rows(events: Sequence[NewEvent]) -> tuple[list[tuple[Any, ...]], dict[RollupKey, int]]:
    """A plain batch's rows, in order, and its 15-minute rollup amounts."""
    amounts: defaultdict[RollupKey, int] = defaultdict(int)
    for event in events:
        count_new_event(event, amounts)
    return [event.values() for event in events], amounts
