"""A plain batch's one hand-off stores what the statement-by-statement way stores, atomically."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import select, text

from app.domain.buckets import DAY_MICROS, HOUR_MICROS, ROLLUP_MICROS
from app.domain.events import EventKind
from app.services.runtime import Runtime
from app.storage import batch_postgresql
from app.storage.asyncpg_statements import PlannedForTableSize
from app.storage.batch_commit import HeldConnection, is_plain, store_batch
from app.storage.rollups import ROLLUP, ROLLUP_DAY, ROLLUP_HOUR
from app.storage.writes import EVENT, NewEvent, rollup_counters, write_batch
from tests.api.helpers import engine_id
from tests.conftest import Tenant
from tests.integration.test_rollup_add import expected, stored

START = datetime(2026, 3, 1, 23, 40, tzinfo=UTC)


def plain_events(engine: int) -> list[NewEvent]:
    """Every kind a plain batch holds, over two days' buckets, with every column set somewhere."""
    events = []
    for n in range(40):
        kind = list(EventKind)[n % len(EventKind)]
        events.append(
            NewEvent(
                engine_id=engine,
                kind=kind,
                occurred_at=START + timedelta(minutes=7 * n, microseconds=n),
                received_at=START + timedelta(hours=1, microseconds=n),
                door="test",
                device=("desktop", "mobile", "unknown")[n % 3],
                is_bot=n % 4 == 0,
                session_id=f"s{n}",
                user_id=f"u{n % 5}" if n % 2 else None,
                query=f"query {n} é" if kind is EventKind.SEARCH else None,
                query_id=f"q{n}" if kind is EventKind.SEARCH else None,
                result_count=n % 3 if kind is EventKind.SEARCH else None,
                document_id=f"d{n}" if kind is EventKind.CLICK else None,
                content_source_id="src" if n % 5 == 0 else None,
                product_type="book" if n % 6 == 0 else None,
                rank=n % 4 if kind is EventKind.CLICK else None,
                page=1 if n % 7 == 0 else None,
                score=(1 if n % 2 else -1) if kind is EventKind.FEEDBACK else None,
                payload={"url": f"/p/{n}", "n": n, "nested": {"a": [1, "b", None]}},
            )
        )
    return events


async def stored_rows(runtime: Runtime, engine: int) -> dict[int, dict[str, Any]]:
    async with runtime.database.engine.connect() as conn:
        rows = await conn.execute(select(EVENT).where(EVENT.c.engine_id == engine))
        return {row.id: {k: v for k, v in row._asdict().items() if k != "id"} for row in rows}


async def test_a_plain_batch_stores_what_write_batch_stores(
    runtime: Runtime, tenant: Tenant, other_tenant: Tenant
) -> None:
    one = await engine_id(runtime, tenant.hashid)
    two = await engine_id(runtime, other_tenant.hashid)
    assert is_plain(plain_events(one))

    written = await store_batch(runtime.database, plain_events(one))
    async with runtime.database.engine.begin() as conn:
        reference = await write_batch(conn, plain_events(two))

    ones, twos = await stored_rows(runtime, one), await stored_rows(runtime, two)
    assert [ones[w.id] | {"engine_id": two} for w in written] == [twos[w.id] for w in reference]
    assert [w.query_id for w in written] == [e.query_id for e in plain_events(one)]
    assert not any(w.duplicate for w in written)
    assert len(ones) == len(written) == len({w.id for w in written})


async def test_a_plain_batch_rolls_up_exactly(runtime: Runtime, tenant: Tenant) -> None:
    engine = await engine_id(runtime, tenant.hashid)
    batches = [plain_events(engine), plain_events(engine)[::3]]
    amounts: list[dict[tuple[int, int, str, str, bool], int]] = []
    for events in batches:
        await store_batch(runtime.database, events)
        counted: dict[tuple[int, int, str, str, bool], int] = {}
        for event in events:
            micros = int(event.occurred_at.timestamp() * 1_000_000)
            bucket = micros - micros % ROLLUP_MICROS
            for metric, amount in rollup_counters(event):
                key = (engine, bucket, metric, event.device, event.is_bot)
                counted[key] = counted.get(key, 0) + amount
        amounts.append(counted)

    assert await stored(runtime, ROLLUP) == expected(amounts, ROLLUP_MICROS)
    assert await stored(runtime, ROLLUP_HOUR) == expected(amounts, HOUR_MICROS)
    assert await stored(runtime, ROLLUP_DAY) == expected(amounts, DAY_MICROS)
    assert len(expected(amounts, DAY_MICROS)) < len(expected(amounts, ROLLUP_MICROS))


@pytest.mark.parametrize("held", [False, True], ids=["pooled", "held"])
async def test_a_failing_plain_batch_leaves_nothing(
    runtime: Runtime, tenant: Tenant, held: bool
) -> None:
    engine = await engine_id(runtime, tenant.hashid)
    events = plain_events(engine)
    events[-1].engine_id = engine + 1000  # no such engine: the last row breaks a foreign key
    writer = HeldConnection(runtime.database) if held else None

    [first] = await store_batch(runtime.database, events[:1], held=writer)
    with pytest.raises(Exception, match=r"(?i)foreign key"):
        await store_batch(runtime.database, events, held=writer)

    assert list(await stored_rows(runtime, engine)) == [first.id]
    assert sum((await stored(runtime, ROLLUP_DAY)).values()) == 1  # the first batch's alone
    # The connection serves again (a held one is replaced after a failure).
    [written] = await store_batch(runtime.database, events[:1], held=writer)
    assert list(await stored_rows(runtime, engine)) == [first.id, written.id]
    if writer is not None:
        await writer.close()


def test_plain_means_nothing_to_look_up_or_link() -> None:
    now = datetime.now(UTC)

    def event(kind: EventKind, **fields: Any) -> NewEvent:
        kept: dict[str, Any] = {"occurred_at": now, "received_at": now, "door": "t"}
        return NewEvent(engine_id=1, kind=kind, device="d", **kept, **fields)

    assert is_plain([event(EventKind.VISIT), event(EventKind.SEARCH, query_id="q")])
    assert is_plain([event(EventKind.CLICK, document_id="d")])
    assert not is_plain([event(EventKind.VISIT), event(EventKind.VISIT, event_id="e")])
    assert not is_plain([event(EventKind.CLICK, query_id="q")])
    assert not is_plain([event(EventKind.FEEDBACK, query_id="q", score=1)])


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_held_postgresql_connection_outlives_a_server_that_closed_it(
    runtime: Runtime, tenant: Tenant
) -> None:
    engine = await engine_id(runtime, tenant.hashid)
    writer = HeldConnection(runtime.database)

    async def backend_of_writer() -> int:
        async with writer.connection() as conn:
            pid: int = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            return pid

    try:
        first = await backend_of_writer()
        await store_batch(runtime.database, plain_events(engine)[:5], held=writer)
        assert await backend_of_writer() == first  # one connection, batch after batch
        # The server ends that connection, as a restart does.
        async with runtime.database.engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        await asyncio.sleep(0.2)  # asyncpg hears the connection close
        written = await store_batch(runtime.database, plain_events(engine)[:5], held=writer)
        assert len(written) == 5  # the next batch goes through, on a fresh connection
        assert await backend_of_writer() != first
    finally:
        await writer.close()
    assert len(await stored_rows(runtime, engine)) == 10


def clicks_naming_a_search(engine: int, event_ids: list[str | None]) -> list[NewEvent]:
    """Clicks that name a search (not a plain batch), one for each eventId given."""
    return [
        NewEvent(
            engine_id=engine,
            kind=EventKind.CLICK,
            occurred_at=START,
            received_at=START,
            door="test",
            device="desktop",
            query_id="q1",
            document_id=f"d{n}",
            event_id=event_id,
        )
        for n, event_id in enumerate(event_ids)
    ]


def statement_rows(events: list[NewEvent]) -> dict[str, str]:
    """The batch statement's parameter for these events."""
    return batch_postgresql._event_rows(
        [(*e.values(), *batch_postgresql._counters(e)) for e in events]
    )


def _scans_of_event(plan: dict[str, Any], *, actual: bool = True) -> list[tuple[str, int]]:
    """Every scan of the event table in an EXPLAIN (FORMAT JSON) plan: its node type and, with
    ANALYZE (``actual``), how many times it ran."""
    found = []
    if plan.get("Relation Name") == "event" and "Scan" in plan["Node Type"]:
        found.append((plan["Node Type"], plan["Actual Loops"] if actual else 0))
    for child in plan.get("Plans", []):
        found += _scans_of_event(child, actual=actual)
    return found


@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.parametrize("with_event_id", [False, True], ids=["no-event-id", "event-id"])
async def test_a_batch_reads_the_table_for_event_ids_only(
    runtime: Runtime, tenant: Tenant, with_event_id: bool
) -> None:
    """Clicks naming a search are not a plain batch; without an eventId among them the statement
    must not scan the table for stored eventIds, whatever plan PostgreSQL keeps for it (a generic
    plan made on a small table hashes the whole table: each batch slower as it grows)."""
    engine = await engine_id(runtime, tenant.hashid)
    await store_batch(runtime.database, plain_events(engine))  # a table that is not empty
    events = clicks_naming_a_search(
        engine, [f"e{n}" if with_event_id and n == 3 else None for n in range(5)]
    )
    assert not is_plain(events)
    parameters = statement_rows(events)
    async with runtime.database.writes.connect() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection
        await driver.execute("SET plan_cache_mode = force_generic_plan")
        transaction = driver.transaction()
        await transaction.start()
        try:
            explained = await driver.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) {batch_postgresql._STORE_ANY.sql}",
                parameters["events"],
            )
        finally:
            await transaction.rollback()
            await driver.execute("RESET plan_cache_mode")
    # SQLAlchemy's asyncpg dialect gives its connections a codec that decodes JSON.
    [plan] = orjson.loads(explained) if isinstance(explained, str) else explained

    full_scans = [loops for node, loops in _scans_of_event(plan["Plan"]) if node == "Seq Scan"]
    if with_event_id:
        assert any(loops for _, loops in _scans_of_event(plan["Plan"]))
    else:
        assert not any(full_scans), plan


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_batch_with_an_event_id_is_planned_again_once_the_table_has_doubled(
    runtime: Runtime, tenant: Tenant
) -> None:
    """PostgreSQL keeps a prepared statement's plan until an ANALYZE: made on a small table, the
    eventId lookup scans the whole table however big it grows. Prepared again once the table
    has doubled, the statement's plan is made for the table as it is: it probes the index."""
    engine = await engine_id(runtime, tenant.hashid)
    sql = batch_postgresql._STORE_ANY.sql
    statement = PlannedForTableSize(batch_postgresql._STORE_ANY, "event", check_every=0)
    batches = iter(range(100))

    def parameters() -> dict[str, str]:
        n = next(batches)
        return statement_rows(clicks_naming_a_search(engine, [f"e{n}-{i}" for i in range(5)]))

    async def scans_by_plan(name: str) -> list[str]:
        # EXECUTE's arguments are not bound: the rows go as a literal.
        rows = parameters()["events"].replace("'", "''")
        explained = await driver.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE {name}('{rows}')")
        # SQLAlchemy's asyncpg dialect gives its connections a codec that decodes JSON.
        [plan] = orjson.loads(explained) if isinstance(explained, str) else explained
        return [node for node, _ in _scans_of_event(plan["Plan"], actual=False)]

    async def latest_statement() -> str:
        name: str = await driver.fetchval(
            "SELECT name FROM pg_prepared_statements WHERE statement = $1 "
            "ORDER BY prepare_time DESC LIMIT 1",
            sql,
        )
        return name

    async with runtime.database.writes.connect() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection
        # Each statement's plan is made once, at its first run, and kept (as PostgreSQL does
        # once a statement has run a few times).
        await driver.execute("SET plan_cache_mode = force_generic_plan")
        try:
            kept_from_small = await driver.prepare(sql)
            await statement.fetch(driver, parameters())
            first = await latest_statement()
            assert "Seq Scan" in await scans_by_plan(first)
            assert "Seq Scan" in await scans_by_plan(kept_from_small.get_name())

            await driver.execute(
                "INSERT INTO event (engine_id, kind, occurred_at, received_at, door, device, "
                "is_bot, clicked, event_id) "
                "SELECT $1, 'visit', 0, 0, 'test', 'desktop', false, false, 'g' || n "
                "FROM generate_series(1, 150000) AS n",
                engine,
                # A connection of the write pool waits 5 s for a statement; this one may take
                # longer on a busy machine (a TimeoutError seen running the README's command).
                timeout=120,
            )
            written = await statement.fetch(driver, parameters())
            assert len(written) == 5
            replanned = await latest_statement()
            assert replanned != first
            assert "Seq Scan" not in await scans_by_plan(replanned)
            # Without being prepared again, the plan made on the small table scans it all.
            assert "Seq Scan" in await scans_by_plan(kept_from_small.get_name())
        finally:
            await driver.execute("RESET plan_cache_mode")
