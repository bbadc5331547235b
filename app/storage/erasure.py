"""The SQL that erases events: one user's (the rollups follow), or those past retention.

Erasing a user's events keeps every counter true, in the transaction that deletes them: each
deleted event is taken out of the rollups it was counted in; a search left without any click is
no longer counted as clicked; and events of other users that were linked to a deleted search are
unlinked (their copy of its query text goes with it, and a click stops counting as linked).

Pruning deletes raw events by age and leaves the rollups alone: totals stay, what needs raw
events (filters, sessions, users, top queries) covers the retention period only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.buckets import rollup_bucket
from app.domain.events import EventKind
from app.storage.models import Event, Rollup
from app.storage.rollups import subtract, subtract_coarse
from app.storage.writes import rollup_counters

EVENT: Table = Event.__table__  # type: ignore[attr-defined]
ROLLUP: Table = Rollup.__table__  # type: ignore[attr-defined]
CHUNK = 500
PRUNE_CHUNK = 5000
# A user's events erased per transaction. Each transaction holds writers off while it runs
# (``_keep_writers_out``): in rounds, a user with many events delays the other writers by one
# round at a time, not by the whole erasure (7,500 events held them 0.33 s in one transaction).
ERASE_CHUNK = 500

# (engine id, bucket, metric, device, is_bot), as writes.py orders them: no deadlock between the two
RollupKey = tuple[int, int, str, str, bool]


@dataclass(frozen=True, slots=True)
class _Stored:
    id: int
    engine_id: int
    kind: EventKind
    occurred_at: datetime
    device: str
    is_bot: bool
    result_count: int | None
    score: int | None
    search_id: int | None
    rank: int | None
    clicked: bool

    def key(self, metric: str) -> RollupKey:
        return (self.engine_id, rollup_bucket(self.occurred_at), metric, self.device, self.is_bot)


_COLUMNS = [EVENT.c[name] for name in _Stored.__slots__]


def _stored(row: Any) -> _Stored:
    values = dict(row._mapping)
    values["kind"] = EventKind(values["kind"])
    return _Stored(**values)


async def erase_user(conn: AsyncConnection, *, engine_ids: Sequence[int], user_id: str) -> int:
    """Delete up to ERASE_CHUNK of the user's events in these engines, rollups adjusted; how many
    were deleted. The caller repeats it, a transaction each, until fewer are deleted.

    Each round leaves every counter true on its own: the erasure of any set of events unlinks
    what links to its searches and unmarks the searches its clicks leave unclicked, so a search
    of a later round clicked in an earlier one is no longer counted as clicked when it goes.
    """
    if not engine_ids:
        return 0
    await _keep_writers_out(conn)
    selected = select(*_COLUMNS).where(
        EVENT.c.engine_id.in_(engine_ids), EVENT.c.user_id == user_id
    )
    rows = await conn.execute(selected.order_by(EVENT.c.id).limit(ERASE_CHUNK))
    erased = [_stored(row) for row in rows]
    if not erased:
        return 0
    gone = {event.id for event in erased}
    minus: defaultdict[RollupKey, int] = defaultdict(int)
    for event in erased:
        for metric, amount in rollup_counters(event):
            minus[event.key(metric)] += amount
        if event.kind is EventKind.SEARCH and event.clicked:
            minus[event.key("search_clicked")] += 1
    searches = sorted(e.id for e in erased if e.kind is EventKind.SEARCH)
    await _unlink_from(conn, searches, gone, minus)
    clicked = sorted({e.search_id for e in erased if e.kind is EventKind.CLICK and e.search_id})
    await _unmark_unclicked(conn, [s for s in clicked if s not in gone], gone, minus)
    for chunk in _chunks(sorted(gone)):
        await conn.execute(delete(EVENT).where(EVENT.c.id.in_(chunk)))
    await subtract(conn, ROLLUP, minus)
    await subtract_coarse(conn, minus)
    return len(gone)


async def _keep_writers_out(conn: AsyncConnection) -> None:
    """No event is written from here until the erasure commits (readers go on).

    The erasure reads what links to the user's searches, then deletes them. A batch committed in
    between, a click linked to one of those searches, would keep its link and its copy of the
    query text, and count as a linked click of a search that is gone. So the erasure holds off
    writers for its transaction: on SQLite it takes the write lock as it begins (``BEGIN
    IMMEDIATE``: SQLite's driver would begin only at the first write, after the reads); on
    PostgreSQL a lock on the events table that every write conflicts with, and another erasure
    too. A batch that waited reads the events afresh once the erasure committed (PostgreSQL takes
    a statement's snapshot after its locks; a batch of several statements, ``write_batch``,
    takes its lock before its first): the search is gone, the click is stored unlinked.
    Called first in the erasure's transaction.
    """
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        await conn.exec_driver_sql(f"LOCK TABLE {EVENT.name} IN SHARE ROW EXCLUSIVE MODE")


async def _unlink_from(
    conn: AsyncConnection, searches: list[int], gone: set[int], minus: dict[RollupKey, int]
) -> None:
    """Events of others that a deleted search linked: unlinked, and their copy of it cleared."""
    for chunk in _chunks(searches):
        rows = await conn.execute(select(*_COLUMNS).where(EVENT.c.search_id.in_(chunk)))
        linked = [event for event in map(_stored, rows) if event.id not in gone]
        for event in linked:
            if event.kind is EventKind.CLICK and event.rank is not None:
                minus[event.key("linked_click")] += 1
                minus[event.key("linked_click_position")] += event.rank + 1
        for ids in _chunks([event.id for event in linked]):
            await conn.execute(
                update(EVENT)
                .where(EVENT.c.id.in_(ids))
                .values(search_id=None, query=None, result_count=None)
            )


async def _unmark_unclicked(
    conn: AsyncConnection, searches: list[int], gone: set[int], minus: dict[RollupKey, int]
) -> None:
    """Searches whose every click is deleted no longer count as clicked."""
    for chunk in _chunks(searches):
        clicks = await conn.execute(
            select(EVENT.c.id, EVENT.c.search_id).where(
                EVENT.c.search_id.in_(chunk), EVENT.c.kind == EventKind.CLICK.value
            )
        )
        still_clicked = {search for click, search in clicks if click not in gone}
        rows = await conn.execute(
            update(EVENT)
            .where(
                EVENT.c.id.in_([search for search in chunk if search not in still_clicked]),
                EVENT.c.clicked.is_(True),
            )
            .values(clicked=False)
            .returning(*_COLUMNS)
        )
        for search in map(_stored, rows):
            minus[search.key("search_clicked")] += 1


async def prune_before(conn: AsyncConnection, *, engine_id: int, cutoff: datetime) -> int:
    """Delete up to PRUNE_CHUNK of an engine's events that occurred before the cutoff.

    One kind at a time, each a range of the (engine, kind, time) index; the caller repeats it,
    a short transaction each, until nothing is left.
    """
    deleted = 0
    for kind in EventKind:
        doomed = (
            select(EVENT.c.id)
            .where(
                EVENT.c.engine_id == engine_id,
                EVENT.c.kind == kind.value,
                EVENT.c.occurred_at < cutoff,
            )
            .limit(PRUNE_CHUNK - deleted)
            .scalar_subquery()
        )
        result = await conn.execute(delete(EVENT).where(EVENT.c.id.in_(doomed)))
        deleted += int(result.rowcount or 0)
        if deleted >= PRUNE_CHUNK:
            break
    return deleted


def _chunks(items: Sequence[int], size: int = CHUNK) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
