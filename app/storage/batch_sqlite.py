"""A write batch's transaction on SQLite, run whole on the connection's own thread."""

from __future__ import annotations

import contextlib
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import aiosqlite
import orjson
from sqlalchemy.exc import DBAPIError

from app.domain.buckets import ROLLUP_MICROS
from app.domain.events import EventKind
from app.storage import rollups
from app.storage.batch_plan import Plan, links_searches, outcomes
from app.storage.sqlite_writer_lock import SqliteWriterLock
from app.storage.writes import INSERTED, NewEvent, RollupKey, Written, count_new_event

Result = TypeVar("Result")
# A search as a click or feedback naming it takes it: its id, query text and result count.
Search = tuple[int, str | None, int | None]


async def on_sqlite_thread(
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


def store_on_sqlite(
    connection: sqlite3.Connection,
    lock: SqliteWriterLock | None,
    events: Sequence[NewEvent],
    batch: Plan,
) -> list[Written]:
    """The batch's transaction, ``write_batch``'s steps as few statements as can be; each
    event's outcome, in order.

    Each statement lets go of the interpreter lock while SQLite works, and taking it back from
    the busy event loop's thread can wait for a whole switch interval (5 ms). So rows go in and
    are looked up as one JSON array a statement, not one step per row. BEGIN IMMEDIATE takes the
    write lock first: nothing else writes until COMMIT, so what the lookups find stays true, and
    an insert's rows get consecutive ids ending at the last one (INTEGER PRIMARY KEY:
    max(rowid) + 1).
    """
    with _immediate_transaction(connection, lock):
        written, links = _write(connection, events, batch)
    # Only now, as write_batch's caller sees them after its commit: a batch that failed may be
    # written again, and must not carry a link to a search its rollback took away.
    for index, (search_id, query, result_count) in links.items():
        event = events[index]
        event.search_id, event.query, event.result_count = search_id, query, result_count
    return outcomes(batch, written)


def store_plain_on_sqlite(
    connection: sqlite3.Connection,
    lock: SqliteWriterLock | None,
    rows: str,
    count: int,
    amounts: list[str],
) -> int:
    """A plain batch's transaction (nothing to look up or link): ``rows``, the batch's rows as
    one JSON array, and ``amounts``, its rollup arrays (``rollups.sqlite_amount_arrays``),
    made by the caller; the last row's id (the rows take consecutive ids, in order).

    This thread holds the interpreter lock only between its statements. Python run here
    waits for the lock while the event loop's thread serves requests: under load a batch of
    32 spent 2.5 ms on this thread (0.85 ms alone), so what can be made beforehand is made on
    the loop's thread, which holds the lock anyway.
    """
    with _immediate_transaction(connection, lock):
        last = _insert_array(connection, rows, count)
        rollups.add_arrays_on_sqlite_thread(connection, amounts)
    return last


@contextlib.contextmanager
def _immediate_transaction(
    connection: sqlite3.Connection, lock: SqliteWriterLock | None
) -> Iterator[None]:
    """BEGIN IMMEDIATE (the write lock first), then COMMIT, or ROLLBACK on any failure; all of
    it holding ``lock``, the writer lock between workers, if there is one."""
    with lock.held() if lock is not None else contextlib.nullcontext():
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
            connection.commit()
        except BaseException:
            connection.rollback()
            raise


def _insert_array(connection: sqlite3.Connection, rows: str, count: int) -> int:
    """Insert ``count`` rows given as one JSON array; the last one's id (they take consecutive
    ids, in order, under the write lock)."""
    inserted = connection.execute(_INSERT_ARRAY, (rows,))
    last = inserted.lastrowid
    if last is None or inserted.rowcount != count:
        raise RuntimeError(f"{inserted.rowcount} of a batch's {count} rows inserted")
    return last


def _write(
    connection: sqlite3.Connection, events: Sequence[NewEvent], batch: Plan
) -> tuple[dict[int, Written], dict[int, Search]]:
    """Each candidate's outcome, and the searches the linked ones name."""
    written = _stored_event_ids(connection, events, batch.order)
    fresh = [i for i in batch.order if i not in written]
    amounts: defaultdict[RollupKey, int] = defaultdict(int)
    links: dict[int, Search] = {}
    stored = list(events)  # the events as stored: a linked one replaced by its linked copy
    if links_searches(events, fresh):
        # The searches first: an event of the batch may name one of them.
        searches = [i for i in fresh if events[i].kind is EventKind.SEARCH]
        others = [i for i in fresh if events[i].kind is not EventKind.SEARCH]
        written |= _insert(connection, stored, searches, amounts)
        links = _searches_named(connection, events, others)
        for index, (search_id, query, result_count) in links.items():
            stored[index] = replace(
                events[index], search_id=search_id, query=query, result_count=result_count
            )
        written |= _insert(connection, stored, others, amounts)
    else:
        written |= _insert(connection, stored, fresh, amounts)
    _mark_clicked_searches(connection, [stored[i] for i in fresh], amounts)
    rollups.add_on_sqlite_thread(connection, amounts)
    return written, links


def _stored_event_ids(
    connection: sqlite3.Connection, events: Sequence[NewEvent], indexes: list[int]
) -> dict[int, Written]:
    """The events whose eventId is stored already, answered with the stored row."""
    keyed = {(events[i].engine_id, events[i].event_id): i for i in indexes if events[i].event_id}
    if not keyed:
        return {}
    rows = connection.execute(_STORED_EVENT_IDS, (orjson.dumps(list(keyed)).decode(),))
    return {
        keyed[(engine_id, event_id)]: Written(row_id, True, query_id)
        for row_id, engine_id, event_id, query_id in rows
    }


def _insert(
    connection: sqlite3.Connection,
    events: Sequence[NewEvent],
    indexes: list[int],
    amounts: defaultdict[RollupKey, int],
) -> dict[int, Written]:
    if not indexes:
        return {}
    rows = orjson.dumps([events[i].values() for i in indexes]).decode()
    last = _insert_array(connection, rows, len(indexes))
    written = {}
    for index, row_id in zip(indexes, range(last - len(indexes) + 1, last + 1), strict=True):
        event = events[index]
        count_new_event(event, amounts)
        written[index] = Written(row_id, False, event.query_id)
    return written


def _searches_named(
    connection: sqlite3.Connection, events: Sequence[NewEvent], indexes: list[int]
) -> dict[int, Search]:
    """For each event naming a recorded search's queryId, that search's id, query text and
    count (of several searches with one queryId, the last stored)."""
    wanted = {(events[i].engine_id, events[i].query_id) for i in indexes if events[i].query_id}
    found: dict[tuple[int, str | None], Search] = {
        (engine_id, query_id): (row_id, query, result_count)
        for engine_id, query_id, row_id, query, result_count in connection.execute(
            _SEARCHES, (orjson.dumps(sorted(wanted)).decode(),)
        )
    }
    return {
        index: found[key]
        for index in indexes
        if (key := (events[index].engine_id, events[index].query_id)) in found
    }


def _mark_clicked_searches(
    connection: sqlite3.Connection,
    events: Sequence[NewEvent],
    amounts: defaultdict[RollupKey, int],
) -> None:
    """Count each search once, at its own time, the first time one of its results is clicked."""
    search_ids = sorted(
        {e.search_id for e in events if e.kind is EventKind.CLICK and e.search_id is not None}
    )
    if not search_ids:
        return
    marked = connection.execute(_MARK_CLICKED, (orjson.dumps(search_ids).decode(),)).fetchall()
    for engine_id, occurred_at, device, is_bot in marked:
        bucket = occurred_at - occurred_at % ROLLUP_MICROS
        amounts[(engine_id, bucket, "search_clicked", device, bool(is_bot))] += 1


_INSERT_ARRAY = (
    f"INSERT INTO event ({', '.join(INSERTED)}) SELECT "
    + ", ".join(f"json_extract(value, '$[{n}]')" for n in range(len(INSERTED)))
    + " FROM json_each(?) ORDER BY key"
)
# The keys first (CROSS JOIN: SQLite keeps that order), each looked up in the unique index;
# the keys as ``[engine_id, value]`` pairs.
_STORED_EVENT_IDS = (
    "SELECT e.id, e.engine_id, e.event_id, e.query_id FROM json_each(?) AS k CROSS JOIN event AS e "
    "WHERE e.engine_id = json_extract(k.value, '$[0]') "
    "AND e.event_id = json_extract(k.value, '$[1]')"
)
# ``kind || ''`` as SEARCHES writes it (app/storage/models.py): the partial index of searches.
# In id order, so that of several searches with one queryId the last stored is kept.
_SEARCHES = (
    "SELECT e.engine_id, e.query_id, e.id, e.query, e.result_count "
    "FROM json_each(?) AS k CROSS JOIN event AS e "
    "WHERE e.engine_id = json_extract(k.value, '$[0]') "
    "AND e.query_id = json_extract(k.value, '$[1]') AND e.kind || '' = 'search' ORDER BY e.id"
)
_MARK_CLICKED = (
    "UPDATE event SET clicked = 1 WHERE id IN (SELECT value FROM json_each(?)) AND clicked = 0 "
    "RETURNING engine_id, occurred_at, device, is_bot"
)
