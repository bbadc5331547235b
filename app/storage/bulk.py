"""Bulk work on the event table: reading it in chunks (export), statistics after loads (import)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from sqlalchemy import Row, select, text

from app.storage.database import Database
from app.storage.writes import EVENT

CHUNK = 5000


async def stored_events(
    database: Database,
    *,
    engine_ids: Sequence[int],
    start: datetime,
    end: datetime,
    chunk: int = CHUNK,
) -> AsyncIterator[list[Row[tuple[object, ...]]]]:
    """The events of these engines that occurred in [start, end), oldest stored first.

    Each chunk is read in its own short transaction, after the last id seen (keyset paging),
    so a long export holds no transaction open and no more than one chunk in memory.
    """
    last_id = 0
    while True:
        statement = (
            select(EVENT)
            .where(
                EVENT.c.id > last_id,
                EVENT.c.engine_id.in_(list(engine_ids)),
                EVENT.c.occurred_at >= start,
                EVENT.c.occurred_at < end,
            )
            .order_by(EVENT.c.id)
            .limit(chunk)
        )
        async with database.engine.connect() as conn:
            rows = list(await conn.execute(statement))
        if not rows:
            return
        yield rows
        last_id = rows[-1].id


async def refresh_statistics(database: Database) -> None:
    """Let PostgreSQL's planner see the rows a bulk load added (``ANALYZE``).

    Without it, on a server whose autovacuum has not yet (or never) analyzed the table, the
    planner keeps believing the table holds the few rows it had, and the eventId lookups of each
    batch scan the engine's whole range: a load gets slower as it grows. SQLite needs nothing.
    """
    if database.is_sqlite:
        return
    async with database.engine.begin() as conn:
        await conn.execute(text("ANALYZE event"))
