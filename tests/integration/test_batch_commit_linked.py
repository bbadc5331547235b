"""Any batch's one hand-off (eventIds, clicks linked to searches) stores what ``write_batch``
stores, atomically, and an eventId once however many writers send it at the same time."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.domain.events import EventKind
from app.services.runtime import Runtime
from app.storage.batch_commit import HeldConnection, is_plain, store_batch
from app.storage.rollups import ROLLUP, ROLLUP_DAY, ROLLUP_HOUR
from app.storage.writes import COPY_ROWS, NewEvent, Written, write_batch
from tests.api.helpers import engine_id, rollup_totals
from tests.conftest import make_tenant
from tests.integration.test_batch_commit import stored_rows
from tests.integration.test_rollup_add import stored
from tests.integration.test_writes import _wait_until_blocked

START = datetime(2026, 3, 1, 23, 50, tzinfo=UTC)


def event(engine: int, kind: EventKind, n: int, **fields: Any) -> NewEvent:
    """An event of ``kind`` at the n-th 7-minute step from START, over two days' buckets."""
    defaults: dict[str, Any] = {
        "query": f"query {n}" if kind is EventKind.SEARCH else None,
        "result_count": n % 3 if kind is EventKind.SEARCH else None,
        "document_id": f"d{n}" if kind in (EventKind.CLICK, EventKind.FEEDBACK) else None,
        "rank": n % 4 if kind is EventKind.CLICK else None,
        "score": 1 if kind is EventKind.FEEDBACK else None,
    }
    return NewEvent(
        engine_id=engine,
        kind=kind,
        occurred_at=START + timedelta(minutes=7 * n, microseconds=n),
        received_at=START + timedelta(hours=1),
        door="test",
        device=("desktop", "mobile", "unknown")[n % 3],
        is_bot=n % 5 == 0,
        session_id=f"s{n}",
        payload={"n": n},
        **(defaults | fields),
    )


def stored_before(one: int, two: int) -> list[NewEvent]:
    """What the engines hold before the batch: searches, one already clicked, and events with
    eventIds; engine two has the same queryIds and eventIds as engine one."""
    search, click, visit = EventKind.SEARCH, EventKind.CLICK, EventKind.VISIT
    return [
        event(one, search, 1, query_id="old"),
        event(one, search, 2, query_id="clicked"),
        event(one, click, 3, query_id="clicked"),
        event(one, search, 4, query_id="kept", event_id="search-kept"),
        event(one, visit, 5, event_id="visit-kept"),
        event(one, click, 6, query_id="clicked", event_id="click-kept"),
        event(two, search, 7, query_id="old", result_count=0),
        event(two, visit, 8, event_id="visit-kept"),
    ]


def mixed_batch(one: int, two: int) -> list[NewEvent]:
    """Duplicates within the batch and of stored rows, clicks and feedback linked to stored
    searches, to searches of the batch and to none, on two engines sharing ids."""
    search, click, visit = EventKind.SEARCH, EventKind.CLICK, EventKind.VISIT
    feedback = EventKind.FEEDBACK
    return [
        event(one, visit, 10),
        event(one, visit, 11, event_id="visit-kept"),  # stored already
        event(one, click, 12, query_id="new"),  # the batch's own search, inserted after it
        event(one, search, 13, query_id="new", event_id="search-new"),
        event(one, visit, 14, event_id="visit-new"),
        event(one, visit, 15, event_id="visit-new"),  # a repeat within the batch
        event(one, visit, 16, event_id="visit-kept"),  # a repeat of a stored one
        event(one, click, 17, query_id="old"),  # marks a stored search clicked...
        event(one, click, 18, query_id="old", event_id="click-new"),  # ...counted once
        event(one, click, 19, query_id="old", event_id="click-kept"),  # stored already
        event(one, click, 20, query_id="clicked"),  # its search was clicked before
        event(one, feedback, 21, query_id="kept"),  # linked
        event(one, click, 22, query_id="unknown"),
        event(one, search, 23, query_id="kept", event_id="search-kept"),  # stored already
        event(one, click, 24, query_id="kept", rank=None),  # linked, no position counted
        event(two, click, 25, query_id="new"),  # engine one's search: not linked here
        event(two, click, 26, query_id="old", event_id="click-new"),  # not a duplicate here
        event(two, visit, 27, event_id="visit-kept"),
        event(two, search, 28, query_id="two-new", result_count=0),
        event(two, feedback, 29, query_id="two-new", score=-1),  # marks nothing clicked
        event(one, visit, 30, event_id="search-new"),  # another kind, the same eventId
    ]


async def four_engines(runtime: Runtime) -> list[int]:
    return [
        await engine_id(runtime, (await make_tenant(runtime, name)).hashid)
        for name in ("one", "two", "three", "four")
    ]


async def write_reference(runtime: Runtime, events: list[NewEvent]) -> list[Written]:
    async with runtime.database.engine.begin() as conn:
        return await write_batch(conn, events)


def linked(events: list[NewEvent], ids: dict[int, int]) -> list[tuple[Any, ...]]:
    """What linking left in the events, search ids translated to the other side's."""
    return [(ids.get(e.search_id or 0), e.query, e.result_count) for e in events]


@pytest.mark.parametrize("held", [False, True], ids=["pooled", "held"])
@pytest.mark.parametrize("copies", [1, COPY_ROWS // 20], ids=["request", "import"])
async def test_any_batch_stores_what_write_batch_stores(
    runtime: Runtime, held: bool, copies: int
) -> None:
    """A request's batch, and a bulk import's (on PostgreSQL written by write_batch itself)."""
    one, two, three, four = await four_engines(runtime)
    writer = HeldConnection(runtime.database) if held else None
    before = await write_reference(runtime, stored_before(one, two))
    reference_before = await write_reference(runtime, stored_before(three, four))
    batch = [e for _ in range(copies) for e in mixed_batch(one, two)]
    reference_batch = [e for _ in range(copies) for e in mixed_batch(three, four)]
    assert not is_plain(batch)
    assert (len(batch) >= COPY_ROWS) is (copies > 1)

    written = await store_batch(runtime.database, batch, held=writer)
    reference = await write_reference(runtime, reference_batch)
    if writer is not None:
        await writer.close()

    # Every outcome as write_batch's, ids translated; duplicates of stored rows and repeats.
    ids = {w.id: r.id for w, r in zip(before + written, reference_before + reference, strict=True)}
    assert [(ids[w.id], w.duplicate, w.query_id) for w in written] == [
        (r.id, r.duplicate, r.query_id) for r in reference
    ]
    assert [w.duplicate for w in written[:21]].count(True) == 7
    assert linked(batch, ids) == linked(reference_batch, {r: r for r in ids.values()})
    # Every row as write_batch's: links, query text and count taken, searches marked clicked.
    engines = {one: three, two: four}
    rows = await stored_rows(runtime, one) | await stored_rows(runtime, two)
    reference_rows = await stored_rows(runtime, three) | await stored_rows(runtime, four)
    new = [w.duplicate for w in written].count(False)
    assert len(rows) == len(reference_rows) == len(before) + new
    for row_id, row in rows.items():
        translated = row | {
            "engine_id": engines[row["engine_id"]],
            "search_id": ids.get(row["search_id"]),
        }
        assert translated == reference_rows[ids[row_id]], row
    # And every rollup count, of the three tables.
    for table in (ROLLUP, ROLLUP_HOUR, ROLLUP_DAY):
        every = await stored(runtime, table)
        counts = {(engines[k[0]], *k[1:]): n for k, n in every.items() if k[0] in engines}
        reference_counts = {k: n for k, n in every.items() if k[0] in (three, four)}
        assert counts
        assert counts == reference_counts, table.name


async def test_links_and_marks_clicked_as_expected(runtime: Runtime) -> None:
    """What write_batch is trusted to do, checked on the one hand-off alone."""
    one, two, _, _ = await four_engines(runtime)
    before = await store_batch(runtime.database, stored_before(one, two))
    batch = mixed_batch(one, two)
    written = await store_batch(runtime.database, batch)

    assert written[1] == written[6] == Written(before[4].id, True, None)
    assert written[5] == Written(written[4].id, True, None)
    assert written[9] == Written(before[5].id, True, "clicked")  # the stored row's queryId
    assert written[13] == Written(before[3].id, True, "kept")
    assert written[17] == Written(before[7].id, True, None)
    assert written[20] == Written(written[3].id, True, "new")  # another kind, same eventId
    assert batch[2].search_id == written[3].id  # the batch's own search
    assert batch[7].search_id == batch[8].search_id == before[0].id
    assert (batch[11].search_id, batch[11].query) == (before[3].id, "query 4")
    assert batch[12].search_id is None
    assert batch[15].search_id is None
    assert batch[16].search_id == before[6].id
    assert batch[16].result_count == 0
    assert batch[19].search_id == written[18].id
    rows = await stored_rows(runtime, one) | await stored_rows(runtime, two)
    clicked = [before[0], before[1], before[3], before[6], written[3]]
    assert [rows[w.id]["clicked"] for w in clicked] == [True] * 5
    assert not rows[written[18].id]["clicked"]  # feedback marks nothing
    assert (await rollup_totals(runtime))["search_clicked"] == 5  # each search once


@pytest.mark.parametrize("held", [False, True], ids=["pooled", "held"])
async def test_a_failing_batch_leaves_nothing(runtime: Runtime, held: bool) -> None:
    one, two, _, _ = await four_engines(runtime)
    writer = HeldConnection(runtime.database) if held else None
    before = await store_batch(runtime.database, stored_before(one, two), held=writer)
    rollups = {table.name: await stored(runtime, table) for table in (ROLLUP, ROLLUP_DAY)}
    batch = mixed_batch(one, two)
    batch[-1].engine_id = two + 1000  # no such engine: the last row breaks a foreign key

    with pytest.raises(Exception, match=r"(?i)foreign key"):
        await store_batch(runtime.database, batch, held=writer)

    assert all(e.search_id is None for e in batch)  # no link to a search rolled back
    rows = await stored_rows(runtime, one) | await stored_rows(runtime, two)
    assert sorted(rows) == sorted(w.id for w in before)
    assert not rows[before[0].id]["clicked"]  # its clicks were not stored: still unclicked
    assert rollups == {table.name: await stored(runtime, table) for table in (ROLLUP, ROLLUP_DAY)}
    # The connection serves again (a held one is replaced after a failure).
    written = await store_batch(runtime.database, mixed_batch(one, two), held=writer)
    assert [w.duplicate for w in written].count(True) == 7
    if writer is not None:
        await writer.close()


async def test_an_event_id_stored_meanwhile_is_answered_as_a_duplicate(runtime: Runtime) -> None:
    """The batch's lookup cannot see a row committed after it began: on PostgreSQL its insert
    then fails and the batch is written again, on SQLite it waits for the write lock."""
    one, two, _, _ = await four_engines(runtime)
    database = runtime.database
    first_batch = [event(one, EventKind.SEARCH, 1, query_id="q", event_id="x")]
    racing_batch = [
        event(one, EventKind.VISIT, 2),
        event(one, EventKind.SEARCH, 3, query_id="q", event_id="x"),
        event(one, EventKind.CLICK, 4, query_id="q"),
        event(two, EventKind.VISIT, 5, event_id="x"),
    ]

    async with database.engine.connect() as first, database.engine.connect() as watcher:
        await first.begin()
        [original] = await write_batch(first, first_batch)
        racing = asyncio.create_task(store_batch(database, racing_batch))
        await _wait_until_blocked(watcher, not database.is_sqlite)
        assert not racing.done()
        await first.commit()
        visit, search, click, other = await asyncio.wait_for(racing, timeout=10)

    assert (search.id, search.duplicate) == (original.id, True)
    assert not any(w.duplicate for w in (visit, click, other))
    assert racing_batch[2].search_id == original.id
    rows = await stored_rows(runtime, one)
    assert sorted(rows) == sorted([original.id, visit.id, click.id])
    assert rows[original.id]["clicked"]
    assert await rollup_totals(runtime) == {
        "search": 1,
        "visit": 2,
        "click": 1,
        "linked_click": 1,
        "linked_click_position": 1,
        "search_clicked": 1,
    }


async def test_concurrent_writers_store_each_event_id_once(runtime: Runtime) -> None:
    one, two, _, _ = await four_engines(runtime)
    event_ids = [f"e{n}" for n in range(20)]

    def batch(writer: int) -> list[NewEvent]:
        """Every eventId on both engines, from the writer's own starting point on."""
        turned = list(range(writer % 3, len(event_ids))) + list(range(writer % 3))
        return [
            event(engine, kind, k, event_id=event_ids[k], query_id=f"q{k}" if k % 2 else None)
            for k in turned
            for kind in [(EventKind.VISIT, EventKind.SEARCH)[k % 2]]
            for engine in (one, two)
        ] + [event(one, EventKind.CLICK, writer, query_id="q1")]

    results = await asyncio.gather(*(store_batch(runtime.database, batch(w)) for w in range(8)))

    rows = await stored_rows(runtime, one) | await stored_rows(runtime, two)
    keyed = Counter((row["engine_id"], row["event_id"]) for row in rows.values())
    assert keyed.pop((one, None)) == 8  # the clicks
    assert set(keyed.values()) == {1}
    assert len(keyed) == 2 * len(event_ids)
    stored_ids = {w.id for written in results for w in written if not w.duplicate}
    assert stored_ids == set(rows)
    for written in results:
        assert {w.id for w in written} <= set(rows)
    totals = await rollup_totals(runtime)
    assert (totals["visit"], totals["search"], totals["click"]) == (20, 20, 8)
