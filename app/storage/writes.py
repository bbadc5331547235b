"""The SQL of one write batch: dedupe by eventId, link clicks to searches, insert, roll up."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import Row, Table, and_, insert, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.buckets import ROLLUP_MICROS, rollup_bucket
from app.domain.events import EventKind
from app.storage.models import SEARCHES, Event
from app.storage.rollups import add as add_rollups
from app.storage.types import to_micros

EVENT: Table = Event.__table__  # type: ignore[attr-defined]
# Stay well under SQLite's and asyncpg's bound-parameter limits.
LOOKUP_CHUNK = 500
# From this many new rows on, PostgreSQL gets them by COPY (a bulk import's batches); below it
# one INSERT costs fewer round trips (a request's batch).
COPY_ROWS = 200
# The columns an insert sets, in the order of ``NewEvent.values``.
INSERTED = (
    "engine_id",
    "kind",
    "occurred_at",
    "received_at",
    "event_id",
    "door",
    "session_id",
    "user_id",
    "device",
    "is_bot",
    "query",
    "query_id",
    "result_count",
    "search_id",
    "clicked",
    "document_id",
    "content_source_id",
    "product_type",
    "rank",
    "page",
    "score",
    "payload",
)
_SQLITE_INSERT = (
    f"INSERT INTO event ({', '.join(INSERTED)}) VALUES ({', '.join('?' for _ in INSERTED)}) "
    "ON CONFLICT (engine_id, event_id) DO NOTHING"
)
_SQLITE_STORED_EVENT_IDS = (
    "SELECT id, event_id, query_id FROM event "
    "WHERE engine_id = ? AND event_id IN (SELECT value FROM json_each(?))"
)


@dataclass(slots=True, kw_only=True)
class NewEvent:
    """One validated, enriched event bound to its engine, ready to insert."""

    engine_id: int
    kind: EventKind
    occurred_at: datetime
    received_at: datetime
    door: str
    device: str
    is_bot: bool = False
    event_id: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    query: str | None = None
    query_id: str | None = None
    result_count: int | None = None
    document_id: str | None = None
    content_source_id: str | None = None
    product_type: str | None = None
    rank: int | None = None
    page: int | None = None
    score: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    search_id: int | None = None

    def row(self) -> dict[str, Any]:
        return {
            "engine_id": self.engine_id,
            "kind": self.kind.value,
            "occurred_at": self.occurred_at,
            "received_at": self.received_at,
            "event_id": self.event_id,
            "door": self.door,
            "session_id": self.session_id,
            "user_id": self.user_id,
            "device": self.device,
            "is_bot": self.is_bot,
            "query": self.query,
            "query_id": self.query_id,
            "result_count": self.result_count,
            "search_id": self.search_id,
            "clicked": False,
            "document_id": self.document_id,
            "content_source_id": self.content_source_id,
            "product_type": self.product_type,
            "rank": self.rank,
            "page": self.page,
            "score": self.score,
            "payload": self.payload,
        }

    def values(self) -> tuple[Any, ...]:
        """The row as the driver takes it, in ``INSERTED`` order: instants as epoch
        microseconds, the payload as JSON text (what the column types would bind)."""
        return (
            self.engine_id,
            self.kind.value,
            to_micros(self.occurred_at),
            to_micros(self.received_at),
            self.event_id,
            self.door,
            self.session_id,
            self.user_id,
            self.device,
            self.is_bot,
            self.query,
            self.query_id,
            self.result_count,
            self.search_id,
            False,
            self.document_id,
            self.content_source_id,
            self.product_type,
            self.rank,
            self.page,
            self.score,
            _json(self.payload),
        )


@dataclass(frozen=True, slots=True)
class Written:
    """What became of one event: its row id, whether it was already stored, its search's id."""

    id: int
    duplicate: bool
    query_id: str | None


RollupKey = tuple[int, int, str, str, bool]


async def write_batch(conn: AsyncConnection, events: Sequence[NewEvent]) -> list[Written]:
    """Store the events in the open transaction; the caller commits."""
    await _hold_off_erasures(conn)
    existing = await _existing_event_ids(conn, events)
    outcomes: list[Written | None] = [None] * len(events)
    fresh: dict[tuple[int, str], int] = {}
    to_insert: list[int] = []
    for index, event in enumerate(events):
        key = (event.engine_id, event.event_id) if event.event_id else None
        if key is not None and key in existing:
            outcomes[index] = existing[key]
        elif key is not None and key in fresh:
            continue  # a retry racing its original in the same batch: resolved below
        else:
            if key is not None:
                fresh[key] = index
            to_insert.append(index)

    rollups: defaultdict[RollupKey, int] = defaultdict(int)
    searches = [i for i in to_insert if events[i].kind is EventKind.SEARCH]
    others = [i for i in to_insert if events[i].kind is not EventKind.SEARCH]
    await _insert(conn, events, searches, outcomes, rollups)
    await _link_to_searches(conn, events, others, outcomes)
    inserted = await _insert(conn, events, others, outcomes, rollups)
    await _mark_clicked_searches(conn, [events[i] for i in inserted], rollups)
    await add_rollups(conn, rollups)

    for index, event in enumerate(events):
        if outcomes[index] is None and event.event_id:
            original = outcomes[fresh[(event.engine_id, event.event_id)]]
            assert original is not None
            outcomes[index] = Written(original.id, True, original.query_id)
    return [outcome for outcome in outcomes if outcome is not None]


async def _hold_off_erasures(conn: AsyncConnection) -> None:
    """On PostgreSQL, the lock on the events table that the insert takes anyway, taken before
    the lookups. A user's erasure (app/storage/erasure.py) locks writers out, not readers: a
    click whose search was looked up before the erasure and stored after it would stay linked
    to the erased search, with its user's query text. So an erasure that began first is waited
    for (each lookup, a statement of its own, then sees what it left), and one that comes later
    waits for the batch. (On SQLite a batch takes the write lock before it reads:
    app/storage/batch_sqlite.py.)"""
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql(f"LOCK TABLE {EVENT.name} IN ROW EXCLUSIVE MODE")


async def _existing_event_ids(
    conn: AsyncConnection, events: Sequence[NewEvent]
) -> dict[tuple[int, str], Written]:
    found: dict[tuple[int, str], Written] = {}
    for engine_id, event_ids in _by_engine((e.engine_id, e.event_id) for e in events):
        for row in await _stored_with_event_ids(conn, engine_id, event_ids):
            found[(engine_id, row.event_id)] = Written(row.id, True, row.query_id)
    return found


async def _stored_with_event_ids(
    conn: AsyncConnection, engine_id: int, event_ids: list[str]
) -> list[Row[Any]]:
    if conn.dialect.name == "sqlite":
        # One statement however many: the eventIds as one JSON array, searched in the unique
        # index one by one (a bulk import's 5,000 took ten statements of bound lists).
        ids = orjson.dumps(event_ids).decode()
        return list(await conn.exec_driver_sql(_SQLITE_STORED_EVENT_IDS, (engine_id, ids)))
    rows: list[Row[Any]] = []
    for chunk in _chunks(event_ids):
        rows += await conn.execute(
            select(EVENT.c.id, EVENT.c.event_id, EVENT.c.query_id).where(
                EVENT.c.engine_id == engine_id, EVENT.c.event_id.in_(chunk)
            )
        )
    return rows


def _by_engine(keys: Iterable[tuple[int, str | None]]) -> list[tuple[int, list[str]]]:
    """Values grouped by engine, for lookups as ``engine_id = ? AND column IN (…)``.

    SQLite does not search an index for a row-value list, ``(engine_id, column) IN ((…), …)``:
    it scans the whole index (or table) for every batch, which grows with the table.
    """
    grouped: defaultdict[int, set[str]] = defaultdict(set)
    for engine_id, value in keys:
        if value:
            grouped[engine_id].add(value)
    return [(engine_id, sorted(values)) for engine_id, values in sorted(grouped.items())]


async def _insert(
    conn: AsyncConnection,
    events: Sequence[NewEvent],
    indexes: list[int],
    outcomes: list[Written | None],
    rollups: defaultdict[RollupKey, int],
) -> list[int]:
    """Insert the events and count them; returns the indexes of those actually inserted.

    Events carrying an eventId go in one key order for every batch, so two inserting the same
    eventIds cannot deadlock. One that a concurrent batch stored first (the lookup before the
    insert cannot see a batch committing meanwhile) is skipped and answered as a duplicate.
    """
    if not indexes:
        return []
    plain = [i for i in indexes if not events[i].event_id]
    keyed = sorted(
        (i for i in indexes if events[i].event_id), key=lambda index: _event_key(events[index])
    )
    if conn.dialect.name == "sqlite":
        inserted = await _insert_sqlite(conn, events, plain + keyed, len(plain), outcomes)
    elif len(indexes) >= COPY_ROWS:
        inserted = await _copy_postgresql(conn, events, plain, keyed, outcomes)
    else:
        inserted = await _insert_postgresql(conn, events, plain, keyed, outcomes)
    for index, row_id in inserted:
        event = events[index]
        outcomes[index] = Written(row_id, False, event.query_id)
        count_new_event(event, rollups)
    return [index for index, _ in inserted]


def count_new_event(event: NewEvent, rollups: defaultdict[RollupKey, int]) -> None:
    """Add a newly stored event's counters to the batch's 15-minute rollup amounts."""
    micros = to_micros(event.occurred_at)
    key = (event.engine_id, micros - micros % ROLLUP_MICROS)
    for metric, amount in rollup_counters(event):
        rollups[(*key, metric, event.device, event.is_bot)] += amount


async def _insert_sqlite(
    conn: AsyncConnection,
    events: Sequence[NewEvent],
    indexes: list[int],
    plain: int,
    outcomes: list[Written | None],
) -> list[tuple[int, int]]:
    """One ``executemany`` without RETURNING; ``indexes`` start with the ``plain`` events.

    SQLite cannot promise the order of RETURNING rows, so SQLAlchemy would insert them one at a
    time. Under the transaction's write lock an INTEGER PRIMARY KEY takes max(rowid) + 1 for
    each row in turn, so the rows inserted hold the consecutive run of ids ending at
    ``last_insert_rowid()``, in the order given.
    """
    result = await conn.exec_driver_sql(_SQLITE_INSERT, [events[i].values() for i in indexes])
    stored = int(result.rowcount)
    last = int((await conn.exec_driver_sql("SELECT last_insert_rowid()")).scalar_one())
    first = last - stored + 1
    if stored == len(indexes):
        return list(zip(indexes, range(first, last + 1), strict=True))
    # A concurrent writer committed some of these eventIds after the lookup, before this batch
    # took the write lock: their rows are older than this batch's, which are the ids from first.
    inserted = list(zip(indexes[:plain], range(first, first + plain), strict=True))
    keyed = indexes[plain:]
    found = await _existing_event_ids(conn, [events[i] for i in keyed])
    for index in keyed:
        row = found[_event_key(events[index])]
        if row.id >= first:
            inserted.append((index, row.id))
        else:
            outcomes[index] = row
    return inserted


async def _copy_postgresql(
    conn: AsyncConnection,
    events: Sequence[NewEvent],
    plain: list[int],
    keyed: list[int],
    outcomes: list[Written | None],
) -> list[tuple[int, int]]:
    """COPY the rows with ids taken from the table's sequence beforehand (no RETURNING).

    COPY knows no ON CONFLICT: if a concurrent batch stored one of the eventIds after the
    lookup, the COPY is rolled back to its savepoint and the rows go in by INSERT instead.
    """
    indexes = plain + keyed
    reserved = await conn.execute(_RESERVE_IDS, {"count": len(indexes)})
    ids = sorted(reserved.scalars())
    records = [(row_id, *events[i].values()) for row_id, i in zip(ids, indexes, strict=True)]
    try:
        async with conn.begin_nested():
            await _copy(conn, records)
    except IntegrityError:
        return await _insert_postgresql(conn, events, plain, keyed, outcomes)
    return list(zip(indexes, ids, strict=True))


async def _copy(conn: AsyncConnection, records: list[tuple[Any, ...]]) -> None:
    raw = await conn.get_raw_connection()
    try:
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            "event", records=records, columns=("id", *INSERTED)
        )
    except Exception as error:
        # Errors as SQLAlchemy raises them from a statement (IntegrityError, OperationalError…),
        # so that a conflict, a lost connection or a database going down are told apart.
        try:
            raw.dbapi_connection._handle_exception(error)  # type: ignore[union-attr]
        except conn.dialect.loaded_dbapi.Error as adapted:
            raise DBAPIError.instance(
                "COPY event", None, adapted, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
            ) from error
        raise


async def _insert_postgresql(
    conn: AsyncConnection,
    events: Sequence[NewEvent],
    plain: list[int],
    keyed: list[int],
    outcomes: list[Written | None],
) -> list[tuple[int, int]]:
    inserted: list[tuple[int, int]] = []
    if plain:
        statement = insert(EVENT).returning(EVENT.c.id, sort_by_parameter_order=True)
        result = await conn.execute(statement, [events[i].row() for i in plain])
        inserted += zip(plain, result.scalars(), strict=True)
    if keyed:
        inserted += await _insert_keyed(conn, events, keyed, outcomes)
    return inserted


async def _insert_keyed(
    conn: AsyncConnection,
    events: Sequence[NewEvent],
    indexes: list[int],
    outcomes: list[Written | None],
) -> list[tuple[int, int]]:
    """Insert events carrying an eventId, skipping those a concurrent batch stored first.

    ON CONFLICT DO NOTHING waits for a batch committing meanwhile and skips its rows, which are
    then answered as duplicates instead of failing.
    """
    statement = (
        postgresql.insert(EVENT)
        .on_conflict_do_nothing(index_elements=[EVENT.c.engine_id, EVENT.c.event_id])
        .returning(EVENT.c.id, EVENT.c.engine_id, EVENT.c.event_id)
    )
    result = await conn.execute(statement, [events[i].row() for i in indexes])
    ids = {(row.engine_id, row.event_id): row.id for row in result}
    inserted: list[tuple[int, int]] = []
    skipped: list[int] = []
    for index in indexes:
        row_id = ids.get(_event_key(events[index]))
        if row_id is None:
            skipped.append(index)
        else:
            inserted.append((index, row_id))
    if skipped:
        existing = await _existing_event_ids(conn, [events[i] for i in skipped])
        for index in skipped:
            outcomes[index] = existing[_event_key(events[index])]
    return inserted


def _event_key(event: NewEvent) -> tuple[int, str]:
    assert event.event_id is not None
    return (event.engine_id, event.event_id)


async def _link_to_searches(
    conn: AsyncConnection,
    events: Sequence[NewEvent],
    indexes: list[int],
    outcomes: list[Written | None],
) -> None:
    """A click or feedback naming a recorded search's queryId takes its query text and count."""
    searches: dict[tuple[int, str | None], tuple[int, str | None, int | None]] = {}
    wanted = _by_engine((events[i].engine_id, events[i].query_id) for i in indexes)
    for engine_id, query_ids in wanted:
        for chunk in _chunks(query_ids):
            rows = await conn.execute(
                select(EVENT.c.id, EVENT.c.query_id, EVENT.c.query, EVENT.c.result_count).where(
                    EVENT.c.engine_id == engine_id,
                    EVENT.c.query_id.in_(chunk),
                    # Written out, not bound: only then can SQLite and PostgreSQL use the partial
                    # index of searches' queryIds, which holds no click sharing the id.
                    SEARCHES,
                )
            )
            for row in rows:
                searches[(engine_id, row.query_id)] = (row.id, row.query, row.result_count)
    for index in indexes:
        event = events[index]
        found = searches.get((event.engine_id, event.query_id))
        if found is not None:
            event.search_id, event.query, event.result_count = found


async def _mark_clicked_searches(
    conn: AsyncConnection, events: Iterable[NewEvent], rollups: defaultdict[RollupKey, int]
) -> None:
    """Count each search once, at its own time, the first time one of its results is clicked."""
    search_ids = sorted(
        {e.search_id for e in events if e.kind is EventKind.CLICK and e.search_id is not None}
    )
    for chunk in _chunks(search_ids):
        rows = await conn.execute(
            update(EVENT)
            .where(and_(EVENT.c.id.in_(chunk), EVENT.c.clicked.is_(False)))
            .values(clicked=True)
            .returning(EVENT.c.engine_id, EVENT.c.occurred_at, EVENT.c.device, EVENT.c.is_bot)
        )
        for row in rows:
            key = (row.engine_id, rollup_bucket(row.occurred_at), "search_clicked", row.device)
            rollups[(*key, row.is_bot)] += 1


_RESERVE_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('event', 'id')) FROM generate_series(1, :count)"
)


class Counted(Protocol):
    """What decides the rollup counters of an event: a new one, or a stored one being erased."""

    @property
    def kind(self) -> EventKind: ...
    @property
    def result_count(self) -> int | None: ...
    @property
    def score(self) -> int | None: ...
    @property
    def search_id(self) -> int | None: ...
    @property
    def rank(self) -> int | None: ...


def rollup_counters(event: Counted) -> list[tuple[str, int]]:
    """The rollup counters one stored event adds to (and its erasure takes away)."""
    metrics = [(event.kind.value, 1)]
    if event.kind is EventKind.SEARCH and event.result_count == 0:
        metrics.append(("search_no_result", 1))
    elif event.kind is EventKind.FEEDBACK and event.score is not None:
        metrics.append(("feedback_positive" if event.score > 0 else "feedback_negative", 1))
    elif event.search_id is not None:
        metrics += linked_counters(event)
    return metrics


def linked_counters(event: Counted) -> list[tuple[str, int]]:
    """The rollup counters an event adds to, besides its own, once linked to its search."""
    if event.kind is EventKind.CLICK and event.rank is not None:
        # Positions are 1-based: rank 0 is the first result.
        return [("linked_click", 1), ("linked_click_position", event.rank + 1)]
    return []


def _json(payload: dict[str, Any]) -> str:
    try:
        return orjson.dumps(payload).decode()
    except TypeError:  # an integer beyond 64 bits, which orjson does not write
        return json.dumps(payload)


def _chunks(items: Sequence[Any], size: int = LOOKUP_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = [
    "Counted",
    "NewEvent",
    "Written",
    "count_new_event",
    "linked_counters",
    "rollup_counters",
    "write_batch",
]
