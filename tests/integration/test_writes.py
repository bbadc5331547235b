"""One write batch: atomic with its rollups, and safe beside a concurrent batch."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from app.domain.events import EventKind
from app.services.runtime import Runtime
from app.storage.models import Event, Rollup
from app.storage.writes import COPY_ROWS, LOOKUP_CHUNK, NewEvent, write_batch
from tests.api.helpers import engine_id, rollup_totals
from tests.conftest import Tenant


class Abort(Exception):
    pass


def visit(engine: int, event_id: str | None) -> NewEvent:
    now = datetime.now(UTC)
    return NewEvent(
        engine_id=engine,
        kind=EventKind.VISIT,
        occurred_at=now,
        received_at=now,
        door="test",
        device="unknown",
        event_id=event_id,
    )


async def count(runtime: Runtime, column: Any) -> int:
    async with runtime.database.sessions() as session:
        total: int = (await session.execute(select(func.count(column)))).scalar_one()
    return total


async def test_rollups_roll_back_with_their_events(runtime: Runtime, tenant: Tenant) -> None:
    engine = await engine_id(runtime, tenant.hashid)

    async def write_then_fail() -> None:
        async with runtime.database.engine.begin() as conn:
            written = await write_batch(conn, [visit(engine, "a"), visit(engine, None)])
            assert len(written) == 2
            raise Abort

    with pytest.raises(Abort):
        await write_then_fail()

    assert await count(runtime, col(Event.id)) == 0
    assert await count(runtime, col(Rollup.metric)) == 0


async def _wait_until_blocked(conn: AsyncConnection, is_postgres: bool) -> None:
    """Until another connection waits on a lock (PostgreSQL), or a moment (SQLite)."""
    if not is_postgres:
        await asyncio.sleep(0.3)  # SQLite shows no waiters; the writer waits on its busy timeout
        return
    deadline = time.monotonic() + 5
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while True:
        blocked = (await conn.execute(waiting)).scalar_one()
        await conn.rollback()  # pg_stat_activity is a snapshot taken once per transaction
        if blocked:
            return
        assert time.monotonic() < deadline, "the second batch never waited on the first"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("others", [1, COPY_ROWS], ids=["insert", "copy"])
async def test_batch_racing_an_uncommitted_one_answers_duplicate(
    runtime: Runtime, tenant: Tenant, others: int
) -> None:
    """The second batch's lookup cannot see the first's row; it must not fail on it either.

    With ``COPY_ROWS`` new events beside it, PostgreSQL's second batch goes by COPY, which
    fails on the conflict and is done again by INSERT.
    """
    engine = await engine_id(runtime, tenant.hashid)
    database = runtime.database
    fresh = [visit(engine, f"y{n:04}") for n in range(others)]

    async def second_batch() -> list[tuple[int, bool]]:
        async with database.engine.begin() as conn:
            written = await write_batch(conn, [*fresh, visit(engine, "x")])
        return [(w.id, w.duplicate) for w in written]

    async with database.engine.connect() as first, database.engine.connect() as watcher:
        await first.begin()
        [original] = await write_batch(first, [visit(engine, "x")])
        racing = asyncio.create_task(second_batch())
        await _wait_until_blocked(watcher, not database.is_sqlite)
        assert not racing.done()
        await first.commit()
        *ys, (x_id, x_duplicate) = await asyncio.wait_for(racing, timeout=10)

    assert (x_id, x_duplicate) == (original.id, True)
    assert not any(duplicate for _, duplicate in ys)
    assert len({row_id for row_id, _ in ys} | {x_id}) == others + 1
    assert await count(runtime, col(Event.id)) == others + 1
    assert await rollup_totals(runtime) == {"visit": others + 1}


async def test_large_batch_stores_every_row_with_its_id(runtime: Runtime, tenant: Tenant) -> None:
    """A batch big enough for COPY on PostgreSQL: ids as stored, duplicates of the batch too."""
    engine = await engine_id(runtime, tenant.hashid)
    events = [
        visit(engine, f"e{n % (COPY_ROWS + 10)}" if n % 3 else None) for n in range(2 * COPY_ROWS)
    ]
    async with runtime.database.engine.begin() as conn:
        written = await write_batch(conn, events)
    async with runtime.database.engine.connect() as conn:
        rows = {
            row.id: row.event_id
            for row in await conn.execute(select(col(Event.id), col(Event.event_id)))
        }
    assert len(written) == len(events)
    for event, outcome in zip(events, written, strict=True):
        assert rows[outcome.id] == event.event_id
    assert len(rows) == sum(1 for w in written if not w.duplicate)


async def test_a_batch_finds_every_stored_event_id_however_many(
    runtime: Runtime, tenant: Tenant
) -> None:
    """More eventIds than one bound list holds (SQLite: one JSON array; PostgreSQL: chunks),
    with one eventId quoted as JSON must be: each is found, answered with its stored id."""
    engine = await engine_id(runtime, tenant.hashid)
    event_ids = [f"e{n}" for n in range(3 * LOOKUP_CHUNK)] + ['q"uote\\d', "é ü"]
    async with runtime.database.engine.begin() as conn:
        first = await write_batch(conn, [visit(engine, event_id) for event_id in event_ids])
    again = [visit(engine, event_id) for event_id in reversed(event_ids)] + [visit(engine, "new")]
    async with runtime.database.engine.begin() as conn:
        second = await write_batch(conn, again)
    assert not any(outcome.duplicate for outcome in first)
    assert [(w.id, w.duplicate) for w in second[:-1]] == [(w.id, True) for w in reversed(first)]
    assert not second[-1].duplicate
    assert await count(runtime, col(Event.id)) == len(event_ids) + 1
