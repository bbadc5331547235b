"""A write batch stored and committed in as few round trips to the database as it allows.

Under load a batch's commit takes its wall time in event-loop turns, not in the database: each
statement's answer waits until the busy loop gets back to the batch. A plain batch (no eventId
to look up, nothing to link to a search: what the single-event doors mostly send) therefore
goes in one hand-off: on PostgreSQL one statement, the insert and the rollup upserts as a
data-modifying ``WITH``, which is its own transaction; on SQLite one function run on the
connection's own thread, from BEGIN to COMMIT. Any other batch takes ``write_batch``'s
statements in a transaction.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
import orjson
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.events import EventKind
from app.storage import rollups
from app.storage.database import Database
from app.storage.writes import (
    INSERTED,
    NewEvent,
    RollupKey,
    Written,
    count_new_event,
    write_batch,
)

Result = TypeVar("Result")


class HeldSqliteWriter:
    """The group commit's own SQLite connection, kept from one plain batch to the next.

    Checked out of the pool for each batch, a connection costs the batch one more turn of the
    busy event loop: the pool's reset (a rollback on aiosqlite's thread) when it is returned,
    before the batch's requests are answered. One writer at a time writes to SQLite anyway, so
    the recorder keeps one. After a failure it is closed, and the next batch opens another.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._conn: AsyncConnection | None = None
        self._driver: Any = None

    async def store_plain(self, events: Sequence[NewEvent]) -> list[Written]:
        rows, amounts = _rows_and_rollups(events)
        if self._conn is None:
            self._conn = await self._database.writes.connect()
            self._driver = (await self._conn.get_raw_connection()).driver_connection
        try:
            ids = await _on_sqlite_thread(self._driver, _store_on_sqlite, rows, amounts)
        except BaseException:
            await self.close()
            raise
        return _written(ids, events)

    async def close(self) -> None:
        conn, self._conn, self._driver = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: it is being let go of
                await conn.close()


async def store_batch(
    database: Database, events: Sequence[NewEvent], *, held: HeldSqliteWriter | None = None
) -> list[Written]:
    """Store the events atomically and commit; one outcome per event, in order.

    ``held``: on SQLite, the connection plain batches are written on (else one of the pool's).
    """
    if is_plain(events):
        if held is not None and database.is_sqlite:
            return await held.store_plain(events)
        return await _store_plain(database, events)
    async with database.writes.connect() as conn:
        if not database.is_sqlite:
            # The write pool's connections autocommit (app/storage/database.py): this batch's
            # statements need a transaction of their own.
            await conn.execution_options(isolation_level="READ COMMITTED")
        async with conn.begin():
            return await write_batch(conn, events)


def is_plain(events: Sequence[NewEvent]) -> bool:
    """No event has an eventId to look up, none a queryId to link to its search."""
    return all(
        event.event_id is None and (event.query_id is None or event.kind is EventKind.SEARCH)
        for event in events
    )


def _rows_and_rollups(
    events: Sequence[NewEvent],
) -> tuple[list[tuple[Any, ...]], dict[RollupKey, int]]:
    amounts: defaultdict[RollupKey, int] = defaultdict(int)
    for event in events:
        count_new_event(event, amounts)
    return [event.values() for event in events], amounts


def _written(ids: Sequence[int], events: Sequence[NewEvent]) -> list[Written]:
    return [Written(row_id, False, e.query_id) for row_id, e in zip(ids, events, strict=True)]


async def _store_plain(database: Database, events: Sequence[NewEvent]) -> list[Written]:
    rows, amounts = _rows_and_rollups(events)
    async with database.writes.connect() as conn:
        if database.is_sqlite:
            driver = (await conn.get_raw_connection()).driver_connection
            ids: Sequence[int] = await _on_sqlite_thread(driver, _store_on_sqlite, rows, amounts)
        else:
            parameters = rollups.postgresql_parameters(amounts) | _event_arrays(rows)
            ids = sorted((await conn.execute(_STORE_ON_POSTGRESQL, parameters)).scalars())
    return _written(ids, events)


async def _on_sqlite_thread(
    driver: Any, function: Callable[..., Result], *arguments: object
) -> Result:
    """Run ``function(connection, *arguments)`` on aiosqlite's thread, the one that owns the
    connection, as one job of its queue (what each of its own methods does, one call at a time);
    a failure is raised as SQLAlchemy raises it from a statement."""
    assert isinstance(driver, aiosqlite.Connection)
    try:
        result: Result = await driver._execute(  # type: ignore[no-untyped-call]
            function, driver._conn, *arguments
        )
        return result
    except sqlite3.Error as error:
        raise DBAPIError.instance(function.__name__, None, error, sqlite3.Error) from error


def _store_on_sqlite(
    connection: sqlite3.Connection, rows: list[tuple[Any, ...]], amounts: dict[RollupKey, int]
) -> range:
    """The batch's transaction; the new rows' ids, in the order of ``rows``.

    As few statements as can be: each one lets go of the interpreter lock while SQLite works,
    and taking it back from the busy event loop's thread can wait for a whole switch interval
    (5 ms). So the rows go in as one JSON array, by one statement, not one step per row.
    BEGIN IMMEDIATE takes the write lock first, so nothing else inserts meanwhile: the rows get
    consecutive ids ending at the last one inserted (INTEGER PRIMARY KEY: max(rowid) + 1).
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        inserted = connection.execute(_SQLITE_INSERT_ARRAY, (orjson.dumps(rows).decode(),))
        last = inserted.lastrowid
        if last is None or inserted.rowcount != len(rows):
            raise RuntimeError(f"{inserted.rowcount} of a batch's {len(rows)} rows inserted")
        rollups.add_on_sqlite_thread(connection, amounts)
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    return range(last - len(rows) + 1, last + 1)


_SQLITE_INSERT_ARRAY = (
    f"INSERT INTO event ({', '.join(INSERTED)}) SELECT "
    + ", ".join(f"json_extract(value, '$[{n}]')" for n in range(len(INSERTED)))
    + " FROM json_each(?) ORDER BY key"
)


# The event table's columns in ``INSERTED`` order, as PostgreSQL array types. Written out, not
# compiled from the table: strings go as ``text``, because a cast to ``varchar(n)`` would cut an
# over-long value silently, where the insert into the column refuses it.
_EVENT_TYPES = {
    "engine_id": "bigint",
    "kind": "text",
    "occurred_at": "bigint",
    "received_at": "bigint",
    "event_id": "text",
    "door": "text",
    "session_id": "text",
    "user_id": "text",
    "device": "text",
    "is_bot": "boolean",
    "query": "text",
    "query_id": "text",
    "result_count": "integer",
    "search_id": "bigint",
    "clicked": "boolean",
    "document_id": "text",
    "content_source_id": "text",
    "product_type": "text",
    "rank": "integer",
    "page": "integer",
    "score": "smallint",
    "payload": "jsonb",
}


def _event_arrays(rows: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
    columns = list(zip(*rows, strict=True)) or [()] * len(INSERTED)
    return {f"event_{name}": list(values) for name, values in zip(INSERTED, columns, strict=True)}


def _store_on_postgresql() -> str:
    """The rows inserted in the order given, so the sequence hands out ascending ids in that
    order (sorted, they are the rows' ids); the rollup upserts after them, reading their
    RETURNING, so the tables are taken in the order every writer takes them."""
    columns = ", ".join(INSERTED)
    arrays = ", ".join(f"CAST(:event_{name} AS {_EVENT_TYPES[name]}[])" for name in INSERTED)
    insert = (
        f"INSERT INTO event ({columns}) SELECT {columns} FROM unnest({arrays}) "
        f"WITH ORDINALITY AS a({columns}, position) ORDER BY position RETURNING id"
    )
    return (
        f"WITH event_added AS ({insert}), {rollups.upsert_steps('event_added')} "
        "SELECT id FROM event_added"
    )


_STORE_ON_POSTGRESQL = text(_store_on_postgresql())
