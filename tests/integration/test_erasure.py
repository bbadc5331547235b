"""Forgetting a user (GraphQL forgetUser, searchstats forget-user) and retention (prune).

After a user is forgotten the rollups must equal what the remaining raw events add up to, links
from other users' events included; pruning deletes raw events and leaves the rollups alone.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from app.cli import main
from app.domain.buckets import rollup_bucket
from app.domain.events import EventDraft, EventKind
from app.errors import Unavailable
from app.services import accounts, privacy
from app.services.record import change_channel
from app.services.runtime import Runtime
from app.storage import batch_commit, erasure, writes
from app.storage.models import Event, Rollup
from app.storage.rollups import COARSE, folded, subtract_coarse
from app.storage.types import to_micros
from app.storage.writes import NewEvent, rollup_counters
from tests.api.helpers import data, engine_id, error_code, gql
from tests.conftest import Tenant
from tests.integration.stats_seed import principal_of, seed

T = datetime(2025, 3, 2, 12, tzinfo=UTC)
FORGET = """
mutation($user: String!, $engines: [ID!]) {
  forgetUser(userId: $user, engines: $engines) { userId deletedEvents }
}"""
STATS = """
query($engines: [ID!]) {
  stats(from: "2025-03-02", to: "2025-03-02", engines: $engines) {
    searches { totalCount } clicks { totalCount } views { totalCount } users { totalCount }
    clickThroughRate { overall } averageClickPosition { overall }
  }
}"""

Key = tuple[int, int, str, str, bool]


def event(kind: EventKind, user: str | None, minutes: int = 0, **fields: Any) -> EventDraft:
    return EventDraft(kind=kind, user_id=user, occurred_at=T + timedelta(minutes=minutes), **fields)


async def rollups(runtime: Runtime) -> dict[Key, int]:
    """The 15-minute rollups, after checking the hourly and daily ones are their sums."""
    async with runtime.database.sessions() as session:
        rows = (await session.execute(select(Rollup))).scalars()
        quarters = {
            (r.engine_id, to_micros(r.bucket), r.metric, r.device, r.is_bot): r.count
            for r in rows
            if r.count
        }
        for grain, table in COARSE:
            stored = {
                (engine_id, to_micros(bucket), metric, device, is_bot): count
                for engine_id, metric, bucket, device, is_bot, count in await session.execute(
                    select(table)
                )
            }
            assert stored == folded(quarters, grain)
        return quarters


async def recomputed(runtime: Runtime) -> dict[Key, int]:
    """The rollups as the stored raw events add up, by the rules of the write path."""
    totals: defaultdict[Key, int] = defaultdict(int)
    async with runtime.database.sessions() as session:
        for e in (await session.execute(select(Event))).scalars():
            stored = _Row(e)
            for metric, amount in rollup_counters(stored):
                totals[stored.key(metric)] += amount
            if stored.kind is EventKind.SEARCH and e.clicked:
                totals[stored.key("search_clicked")] += 1
    return dict(totals)


class _Row:
    def __init__(self, e: Event) -> None:
        self.kind = EventKind(e.kind)
        self.result_count, self.score, self.search_id, self.rank = (
            e.result_count,
            e.score,
            e.search_id,
            e.rank,
        )
        self._event = e

    def key(self, metric: str) -> Key:
        e = self._event
        assert e.engine_id is not None
        return (e.engine_id, rollup_bucket(e.occurred_at), metric, e.device, e.is_bot)


async def events_of(runtime: Runtime) -> list[Event]:
    async with runtime.database.sessions() as session:
        return list((await session.execute(select(Event).order_by(col(Event.id)))).scalars())


@pytest.fixture
async def story(runtime: Runtime, tenant: Tenant, other_tenant: Tenant) -> dict[str, Any]:
    """Users u and v of acme (two engines) searching and clicking on each other's searches,
    an anonymous search, and a user called u in another account."""
    second = await accounts.create_engine(database=runtime.database, account=tenant.account)
    s1, s2 = await seed(
        runtime,
        tenant,
        [
            event(EventKind.SEARCH, "u", query="u's secret query", result_count=3),
            event(EventKind.SEARCH, "v", 60, query="v's query", result_count=3),
        ],
    )
    await seed(
        runtime,
        tenant,
        [
            event(EventKind.CLICK, "u", 1, query_id=s1.query_id, document_id="d1", rank=0),
            event(EventKind.CLICK, "v", 2, query_id=s1.query_id, document_id="d2", rank=2),
            event(EventKind.CLICK, "u", 61, query_id=s2.query_id, document_id="d3", rank=1),
            event(EventKind.FEEDBACK, "u", 62, query_id=s2.query_id, document_id="d3", score=-1),
            event(EventKind.VIEW, "u", 5, target_id=VIEWED, target_type="item"),
            event(EventKind.VIEW, "v", 5, target_id=VIEWED, target_type="item"),
            event(EventKind.SEARCH, None, 7, query="anonymous", result_count=0),
        ],
    )
    await seed(
        runtime,
        tenant,
        [
            event(EventKind.SEARCH, "u", 3, engine=second.hashid, query="nothing", result_count=0),
            event(EventKind.VISIT, "u", 4, engine=second.hashid, store="main"),
        ],
    )
    await seed(runtime, other_tenant, [event(EventKind.SEARCH, "u", query="globex u")])
    return {"second": second.hashid, "s1": s1, "s2": s2}


VIEWED = "43f9bb3e-f90d-458f-9858-7e4589481d18"


@pytest.mark.parametrize("rounds_of", [erasure.ERASE_CHUNK, 1, 3])
async def test_forget_user_deletes_the_users_events_and_keeps_every_count_true(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant: Tenant,
    other_tenant: Tenant,
    story: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    rounds_of: int,
) -> None:
    """In one transaction, or in rounds (a transaction each) that split u's searches from their
    clicks, and u's clicks from v's search."""
    monkeypatch.setattr(erasure, "ERASE_CHUNK", rounds_of)
    before = await gql(client, tenant, STATS)
    assert await rollups(runtime) == await recomputed(runtime)

    result = data(await gql(client, tenant, FORGET, user="u"), "forgetUser")

    assert result == {"userId": "u", "deletedEvents": 7}
    left = await events_of(runtime)
    assert all(e.user_id != "u" for e in left if e.engine_id != _engine(left, "globex u"))
    assert [e.query for e in left if e.user_id == "u"] == ["globex u"]  # another account's u
    # v's click on u's search stays, but no longer carries u's query nor its link.
    [v_click] = [e for e in left if e.kind == "click"]
    assert (v_click.user_id, v_click.query, v_click.search_id) == ("v", None, None)
    # v's search was clicked by u alone: it is no longer a clicked search.
    [v_search] = [e for e in left if e.query == "v's query"]
    assert v_search.clicked is False
    assert await rollups(runtime) == await recomputed(runtime)

    after = data(await gql(client, tenant, STATS), "stats")
    assert data(before, "stats")["searches"]["totalCount"] == 4
    assert after["searches"]["totalCount"] == 2
    assert after["clicks"]["totalCount"] == 1
    assert after["views"]["totalCount"] == 1
    assert after["users"]["totalCount"] == 1
    assert after["clickThroughRate"]["overall"] == 0
    assert after["averageClickPosition"]["overall"] is None  # the one click left is unlinked
    # Forgetting again finds nothing.
    assert data(await gql(client, tenant, FORGET, user="u"), "forgetUser")["deletedEvents"] == 0


async def test_writes_get_in_between_the_rounds_of_an_erasure(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each round commits on its own, and a write waits for one round, not for the erasure."""
    monkeypatch.setattr(erasure, "ERASE_CHUNK", 2)
    views = [
        event(EventKind.VIEW, "u", n % 60, target_id=VIEWED, target_type="item") for n in range(100)
    ]
    await seed(runtime, tenant, views)
    erasing = asyncio.create_task(
        privacy.forget_user_everywhere(database=runtime.database, user_id="u")
    )

    async def left() -> int:
        return len([e for e in await events_of(runtime) if e.user_id == "u"])

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    # Polled: another transaction's commit has nothing to await.
    while (count := await left()) == 100 and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    assert 0 < count < 100  # a round committed on its own
    [written] = await seed(runtime, tenant, [event(EventKind.VISIT, "w", store="main")])
    assert await left() > 0  # the write did not wait for the whole erasure
    assert await erasing == 100
    assert [e.id for e in await events_of(runtime)] == [written.row]
    assert await rollups(runtime) == await recomputed(runtime)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_batch_that_looked_up_a_search_waits_for_its_users_erasure(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch written statement by statement (on PostgreSQL a bulk import's) looked its click's
    search up, then u was forgotten, then the click was stored: linked to u's erased search,
    with u's query text. The batch now holds the erasure off from its first lookup. (A SQLite
    batch holds the write lock from before it reads: batch_sqlite.py.)"""
    [search] = await seed(runtime, tenant, [event(EventKind.SEARCH, "u", query="u's query")])
    looked_up, go_on = asyncio.Event(), asyncio.Event()
    link = writes._link_to_searches

    async def link_then_wait(*args: Any) -> None:
        await link(*args)
        looked_up.set()
        await go_on.wait()

    monkeypatch.setattr(writes, "_link_to_searches", link_then_wait)
    monkeypatch.setattr(batch_commit, "COPY_ROWS", 1)  # every batch written statement by statement
    click = NewEvent(
        engine_id=await engine_id(runtime, tenant.hashid),
        kind=EventKind.CLICK,
        occurred_at=T + timedelta(minutes=1),
        received_at=T,
        door="test",
        device="desktop",
        user_id="v",
        query_id=search.query_id,
        document_id="d1",
        rank=0,
    )
    writing = asyncio.create_task(batch_commit.store_batch(runtime.database, [click]))
    await looked_up.wait()
    erasing = asyncio.create_task(
        privacy.forget_user_everywhere(database=runtime.database, user_id="u")
    )
    await asyncio.wait([erasing], timeout=1)  # it waits for the batch (it was done at once)
    go_on.set()
    await writing

    assert await erasing == 1
    [left] = await events_of(runtime)
    assert (left.user_id, left.search_id, left.query) == ("v", None, None)
    assert await rollups(runtime) == await recomputed(runtime)


async def test_each_round_searches_indexes_and_never_reads_a_whole_table(
    runtime: Runtime, story: dict[str, Any], backend: str
) -> None:
    """A round holds writers off while it runs: it must not grow with the table. The lookups of
    what links to the user's searches read the whole events table (about a second a round at
    3 million events, twice). Every statement of an erasure, and of pruning, is explained as it
    was sent: each table is searched through an index on its leading column."""
    sent = await _statements_of(
        runtime,
        privacy.forget_user_everywhere(database=runtime.database, user_id="u"),
        privacy.prune(database=runtime.database, older_than_days=1),
    )
    assert any("search_id IN" in statement for statement, _ in sent)
    async with runtime.database.engine.connect() as conn:
        if backend == "postgresql":
            await _planned_as_at_scale(conn)
        for statement, parameters in sent:
            assert await _full_reads(conn, statement, parameters) == [], statement


async def test_a_round_sends_as_many_statements_however_spread_the_users_events_are(
    runtime: Runtime, tenant: Tenant
) -> None:
    """A user's events over months touch a rollup row per bucket: the rows' counts went down two
    round trips each (an update, a delete), in a round that holds writers off; with a database
    across a network, a round of 500 spread events took seconds."""
    viewed = {"target_id": VIEWED, "target_type": "item"}
    spread = [event(EventKind.VIEW, "spread", 1440 * day, **viewed) for day in range(40)]
    packed = [event(EventKind.VIEW, "packed", 0, **viewed) for _ in range(40)]
    await seed(runtime, tenant, spread + packed)

    forget = privacy.forget_user_everywhere
    sent = [
        len(await _statements_of(runtime, forget(database=runtime.database, user_id=user)))
        for user in ("spread", "packed")
    ]

    assert sent[0] == sent[1]
    assert await events_of(runtime) == []
    assert await rollups(runtime) == {}


async def _statements_of(runtime: Runtime, *work: Any) -> list[tuple[str, Any]]:
    """The reads, updates and deletes of events and rollups that ``work`` sent, with their
    parameters, the first set of those run for many (not the list of engines, read whole as it
    should be)."""
    sent: list[tuple[str, Any]] = []

    def sending(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool
    ) -> None:
        if re.match(r"\s*(SELECT|UPDATE|DELETE)\b", statement) and re.search(
            r"\b(event|rollup|rollup_hour|rollup_day)\b", statement
        ):
            sent.append((statement, parameters[0] if many else parameters))

    engine = runtime.database.engine.sync_engine
    sqlalchemy_event.listen(engine, "before_cursor_execute", sending)
    try:
        for step in work:
            await step
    finally:
        sqlalchemy_event.remove(engine, "before_cursor_execute", sending)
    return sent


async def _planned_as_at_scale(conn: AsyncConnection) -> None:
    """PostgreSQL plans for the table it believes it has: a few rows, just analyzed, are
    cheaper to read whole, even through an index, than to look up (a plan it would never choose
    at scale). So the plans are made, in this transaction only, with 20,000 more events of the
    engine, after any cut-off and of no user, analyzed, and with sequential scans off."""
    await conn.exec_driver_sql(
        "INSERT INTO event (engine_id, kind, occurred_at, received_at, door, device, is_bot,"
        " clicked, payload) SELECT (SELECT min(id) FROM engine), 'view', 4000000000000000 + n,"
        " 0, 'test', 'desktop', false, false, '{}' FROM generate_series(1, 20000) AS n"
    )
    await conn.exec_driver_sql("ANALYZE event")
    await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")


async def _full_reads(conn: AsyncConnection, statement: str, parameters: Any) -> list[str]:
    """The tables and indexes the statement reads from end to end, by its plan."""
    if conn.dialect.name == "sqlite":
        plan = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return [row[-1] for row in plan if re.match(r"SCAN (?!json_each)", row[-1])]
    explained = await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
    found = explained.scalar_one()
    [plan] = orjson.loads(found) if isinstance(found, str) else found
    leading: dict[str, str] = dict((await conn.execute(_LEADING_COLUMNS)).all())
    return list(_unsearched(plan["Plan"], leading))


# Each index's first column: an index scan whose condition does not name it reads it all.
_LEADING_COLUMNS = text(
    "SELECT c.relname, a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
)


def _unsearched(node: dict[str, Any], leading: dict[str, str]) -> Any:
    if node["Node Type"] == "Seq Scan":
        yield node["Relation Name"]
    elif "Index Name" in node:
        column = re.escape(leading[node["Index Name"]])
        if not re.search(rf"\b{column}\b", node.get("Index Cond", "")):
            yield node["Index Name"]
    for child in node.get("Plans", []):
        yield from _unsearched(child, leading)


async def test_live_stats_are_told_of_the_rounds_done_when_a_later_one_fails(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rounds before a failure stay committed: live answers that counted their events must
    be computed again, as after an erasure that went to its end (they were not told)."""
    monkeypatch.setattr(erasure, "ERASE_CHUNK", 2)
    views = [event(EventKind.VIEW, "u", n, target_id=VIEWED, target_type="item") for n in range(5)]
    await seed(runtime, tenant, views)
    rounds: list[Any] = []

    async def second_round_fails(conn: AsyncConnection, amounts: Any) -> None:
        rounds.append(amounts)
        if len(rounds) == 2:
            raise OperationalError("UPDATE", None, sqlite3.OperationalError("disk I/O error"))
        await subtract_coarse(conn, amounts)

    monkeypatch.setattr(erasure, "subtract_coarse", second_round_fails)
    async with runtime.broker.subscribe([change_channel(tenant.hashid)]) as told:
        with pytest.raises(Unavailable):
            await privacy.forget_user(
                database=runtime.database,
                policy=runtime.engines,
                broker=runtime.broker,
                principal=await principal_of(runtime, tenant),
                user_id="u",
            )
        assert await asyncio.wait_for(anext(told), timeout=5) == {"type": "erased"}
    assert len(await events_of(runtime)) == 3
    assert await rollups(runtime) == await recomputed(runtime)


def _engine(events: list[Event], query: str) -> int:
    return next(e.engine_id for e in events if e.query == query)


async def test_forget_user_in_named_engines_only(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant, story: dict[str, Any]
) -> None:
    result = await gql(client, tenant, FORGET, user="u", engines=[story["second"]])
    assert data(result, "forgetUser")["deletedEvents"] == 2
    assert len([e for e in await events_of(runtime) if e.user_id == "u"]) == 6
    assert await rollups(runtime) == await recomputed(runtime)


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"user": "u", "engines": ["f" * 32]}, "not_found"),
        ({"user": "u", "engines": ["nope"]}, "bad_params"),
        ({"user": "u", "engines": []}, "bad_params"),  # not "every engine"
        ({"user": ""}, "bad_params"),
        ({"user": "x" * 65}, "bad_params"),
    ],
)
async def test_forget_user_refused(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant: Tenant,
    story: dict[str, Any],
    variables: dict[str, Any],
    code: str,
) -> None:
    count = len(await events_of(runtime))
    assert error_code(await gql(client, tenant, FORGET, **variables)) == code
    assert len(await events_of(runtime)) == count


async def test_forget_user_never_reaches_another_accounts_engine(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant: Tenant,
    other_tenant: Tenant,
    story: dict[str, Any],
) -> None:
    body = await gql(client, tenant, FORGET, user="u", engines=[other_tenant.hashid])
    assert error_code(body) == "access_denied"
    assert error_code(await gql(client, None, FORGET, user="u")) == "not_authenticated"
    assert len([e for e in await events_of(runtime) if e.user_id == "u"]) == 8


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_forget_user_command(
    runtime: Runtime,
    story: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SEARCHSTATS_DATABASE_URL", runtime.settings.database_url)
    monkeypatch.setenv("SEARCHSTATS_SECRET_KEY", "test-secret-key")
    assert await asyncio.to_thread(cli, capsys, "forget-user", "u", "--account", "globex") == (
        0,
        "1\n",
        "",
    )
    code, out, err = await asyncio.to_thread(cli, capsys, "forget-user", "u", "--account", "nope")
    assert (code, out) == (1, "")
    assert err == "searchstats: error: account 'nope' does not exist\n"
    assert await asyncio.to_thread(cli, capsys, "forget-user", "u") == (0, "7\n", "")
    assert [e.user_id for e in await events_of(runtime) if e.user_id] == ["v", "v", "v"]
    assert await rollups(runtime) == await recomputed(runtime)


async def test_prune_deletes_old_raw_events_and_keeps_rollups(
    runtime: Runtime,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = datetime.now(UTC)
    ages = [400, 40, 31, 29, 0]
    await seed(
        runtime,
        tenant,
        [
            EventDraft(
                kind=EventKind.SEARCH, query=f"{days} days", occurred_at=now - timedelta(days=days)
            )
            for days in ages
        ],
    )
    kept = await rollups(runtime)
    monkeypatch.setattr(erasure, "PRUNE_CHUNK", 2)  # several rounds, each its own transaction
    monkeypatch.setenv("SEARCHSTATS_DATABASE_URL", runtime.settings.database_url)
    monkeypatch.setenv("SEARCHSTATS_SECRET_KEY", "test-secret-key")
    assert await asyncio.to_thread(cli, capsys, "prune", "--older-than", "30") == (0, "3\n", "")
    assert [e.query for e in await events_of(runtime)] == ["29 days", "0 days"]
    assert await rollups(runtime) == kept
    with pytest.raises(SystemExit) as refused:
        await asyncio.to_thread(cli, capsys, "prune", "--older-than", "0")
    assert refused.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
