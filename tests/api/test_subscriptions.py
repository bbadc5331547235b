"""Subscriptions over real websockets: both subprotocols, credentials, engines, liveStats."""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from app.domain.stats import Metric
from app.main import create_app
from app.services import accounts, live
from app.services.runtime import Runtime, build_runtime
from app.services.stats import compute_stats
from app.settings import Settings
from graphql_schema import fanout, subscriptions
from graphql_schema.stats_types import Stats
from tests.conftest import Tenant, make_tenant
from tests.e2e.graphql_ws import (
    LEGACY_WS,
    PROTOCOLS,
    TRANSPORT_WS,
    ConnectionRefused,
    GraphQLSocket,
    OperationError,
    eventually,
    graphql_socket,
)
from tests.e2e.live_support import (
    EVENTS,
    LIVE,
    PERIOD,
    STATS,
    Served,
    click,
    gql,
    record,
    search,
    served_app,
    serving,
    token,
    until_idle,
)


@pytest.fixture
async def served(runtime: Runtime) -> AsyncIterator[Served]:
    async with served_app(runtime) as app:
        yield app


async def stats_now(served: Served, tenant: Tenant) -> Any:
    return (await gql(served, tenant, STATS, **PERIOD))["stats"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_event_recorded_streams_committed_events(
    served: Served, tenant: Tenant, protocol: str
) -> None:
    async with graphql_socket(served.ws_url, protocol=protocol, payload=token(tenant)) as socket:
        await socket.subscribe("1", EVENTS, types=["CLICK"])
        await socket.subscribe("2", EVENTS)
        await until_listening(served, 2)
        [searched] = await record(served, tenant, search("shoes"))
        [clicked] = await record(served, tenant, click(searched["queryId"]))
        every = [(await socket.next("2"))["eventRecorded"] for _ in range(2)]
        clicks = (await socket.next("1"))["eventRecorded"]
    assert [e["id"] for e in every] == [searched["id"], clicked["id"]]
    assert every[0] == {
        "id": searched["id"],
        "engine": tenant.hashid,
        "type": "SEARCH",
        "occurredAt": "2025-06-01T01:30:00+00:00",
        "queryId": searched["queryId"],
        "query": "shoes",
        "documentId": None,
        "device": "DESKTOP",
        "isBot": False,
    }
    # types filters: the search never reached the CLICK-only subscription.
    assert (clicks["id"], clicks["type"], clicks["queryId"]) == (
        clicked["id"],
        "CLICK",
        searched["queryId"],
    )


async def until_listening(served: Served, count: int) -> None:
    runtime: Runtime = served.app.state.runtime
    await eventually(lambda: runtime.broker.subscriber_count >= count)


async def test_duplicates_are_not_published(served: Served, tenant: Tenant) -> None:
    async with graphql_socket(served.ws_url, payload=token(tenant)) as socket:
        await socket.subscribe("1", EVENTS)
        await until_listening(served, 1)
        [first] = await record(served, tenant, search("a", eventId="same"))
        await record(served, tenant, search("a", eventId="same"))
        [second] = await record(served, tenant, search("b"))
        received = [(await socket.next("1"))["eventRecorded"]["id"] for _ in range(2)]
    assert received == [first["id"], second["id"]]


@pytest.mark.parametrize(
    ("payload", "headers"),
    [
        ("Authorization", None),
        ("authorization", None),
        (None, "Authorization"),
    ],
    ids=["connection_init", "lowercase-key", "upgrade-header"],
)
async def test_credentials_from_init_payload_or_upgrade_header(
    served: Served, tenant: Tenant, payload: str | None, headers: str | None
) -> None:
    credential = f"Token {tenant.api_key}"
    async with graphql_socket(
        served.ws_url,
        payload={payload: credential} if payload else None,
        headers={headers: credential} if headers else None,
    ) as socket:
        await socket.subscribe("1", LIVE, **PERIOD, interval=1000)
        first = await socket.next("1")
    assert first["liveStats"]["searches"]["totalCount"] == 0


async def test_init_payload_wins_over_the_upgrade_header(
    served: Served, tenant: Tenant, other_tenant: Tenant
) -> None:
    async with graphql_socket(
        served.ws_url, payload=token(other_tenant), headers=token(tenant)
    ) as socket:
        await socket.subscribe("1", EVENTS, engines=[tenant.hashid])
        with pytest.raises(OperationError) as denied:
            await socket.next("1")
    assert denied.value.code == "access_denied"


@pytest.mark.parametrize(
    "payload",
    [None, {"Authorization": "Token " + "0" * 40}, {"Authorization": "Basic abc"}],
    ids=["none", "unknown-key", "wrong-scheme"],
)
async def test_transport_ws_refuses_a_connection_without_valid_credentials(
    served: Served, tenant: Tenant, payload: dict[str, str] | None
) -> None:
    with pytest.raises(ConnectionClosed) as closed:
        await subscribe_once(served.ws_url, payload)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4403, "Forbidden")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_revoked_key_ends_what_a_websocket_opened_with_it_runs_and_starts_nothing_more(
    settings: Settings, protocol: str
) -> None:
    """A connection keeps the account it proved; its credential is checked again while it runs
    something, and for what it starts after the credential memory (here a second), so a leaked
    key, once revoked, cannot go on recording or reading through a websocket it opened before."""
    runtime = build_runtime(settings.model_copy(update={"credential_cache_seconds": 1}))
    await runtime.start()
    try:
        tenant = await make_tenant(runtime, "acme")
        async with (
            served_app(runtime) as served,
            graphql_socket(served.ws_url, payload=token(tenant), protocol=protocol) as socket,
        ):
            await socket.subscribe("live", LIVE, **PERIOD, interval=1000)
            await socket.next("live")
            await socket.subscribe("events", EVENTS)
            await until_listening(served, 2)  # the feed's and eventRecorded's
            await asyncio.sleep(1.2)
            assert await socket.pending("live", 0.1) == []  # checked again: still accepted
            await accounts.revoke_api_key(database=runtime.database, api_key=tenant.api_key)
            loop = asyncio.get_running_loop()
            revoked = loop.time()
            ended = {}
            for op_id in ("live", "events"):
                with pytest.raises(OperationError) as refused:
                    await socket.next(op_id, within=5)
                ended[op_id] = refused.value.code
            # Two periods, and some slack: one for the memory of the key, one for the next check.
            assert loop.time() - revoked < 4
            assert ended == {"live": "not_authenticated", "events": "not_authenticated"}
            await socket.subscribe("later", LIVE, **PERIOD, interval=1000)
            with pytest.raises(OperationError) as refused:
                await socket.next("later")
            assert refused.value.code == "not_authenticated"
        await until_idle(served)
    finally:
        await runtime.stop()


async def subscribe_once(url: str, payload: dict[str, str] | None) -> None:
    async with graphql_socket(url, payload=payload) as socket:
        await socket.subscribe("1", EVENTS)
        await socket.next("1")


async def test_legacy_ws_refuses_a_connection_without_valid_credentials(
    served: Served, tenant: Tenant
) -> None:
    with pytest.raises(ConnectionRefused) as refused:
        async with graphql_socket(served.ws_url, protocol=LEGACY_WS):
            pass
    assert refused.value.payload["code"] == "not_authenticated"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_another_accounts_engine_is_denied(
    served: Served, tenant: Tenant, other_tenant: Tenant, protocol: str
) -> None:
    async with graphql_socket(served.ws_url, protocol=protocol, payload=token(tenant)) as socket:
        await socket.subscribe("1", EVENTS, engines=[other_tenant.hashid])
        await socket.subscribe("2", LIVE, **PERIOD, engines=[other_tenant.hashid], interval=100)
        for op_id in ("1", "2"):
            with pytest.raises(OperationError) as denied:
                await socket.next(op_id)
            assert denied.value.code == "access_denied"
    assert served.hub.watchers == 0


async def test_an_empty_engine_list_is_bad_params_not_every_engine(
    served: Served, tenant: Tenant
) -> None:
    async with graphql_socket(served.ws_url, payload=token(tenant)) as socket:
        await socket.subscribe("1", EVENTS, engines=[])
        await socket.subscribe("2", LIVE, **PERIOD, engines=[], interval=100)
        for op_id in ("1", "2"):
            with pytest.raises(OperationError) as refused:
                await socket.next(op_id)
            assert refused.value.code == "bad_params"
    assert served.hub.watchers == 0


async def test_an_empty_types_list_is_bad_params_not_every_type(
    served: Served, tenant: Tenant
) -> None:
    async with graphql_socket(served.ws_url, payload=token(tenant)) as socket:
        await socket.subscribe("1", EVENTS, types=[])  # a form with no type ticked
        with pytest.raises(OperationError) as refused:
            await socket.next("1")
    assert refused.value.code == "bad_params"
    assert refused.value.errors[0]["message"] == (
        "types must name at least one event type (leave it out for all of them)"
    )
    assert served.app.state.runtime.broker.subscriber_count == 0


async def test_only_the_callers_events_are_streamed(
    served: Served, tenant: Tenant, other_tenant: Tenant
) -> None:
    async with graphql_socket(served.ws_url, payload=token(tenant)) as socket:
        await socket.subscribe("1", EVENTS)
        await until_listening(served, 1)
        await record(served, other_tenant, search("theirs"))
        [mine] = await record(served, tenant, search("mine"))
        first = (await socket.next("1"))["eventRecorded"]
    assert (first["id"], first["query"]) == (mine["id"], "mine")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_live_stats_emits_at_once_then_equals_stats_after_changes(
    served: Served, tenant: Tenant, protocol: str
) -> None:
    [searched] = await record(served, tenant, search("boots"))
    async with graphql_socket(served.ws_url, protocol=protocol, payload=token(tenant)) as socket:
        await socket.subscribe("1", LIVE, **PERIOD, interval=100)
        first = (await socket.next("1"))["liveStats"]
        assert first == await stats_now(served, tenant)
        assert first["searches"]["totalCount"] == 1
        await record(served, tenant, click(searched["queryId"]), search("boots"), search("hat"))
        second = (await socket.next("1"))["liveStats"]
        assert second == await stats_now(served, tenant)
    assert second["clicks"]["totalCount"] == 1
    assert second["topQueries"] == [{"query": "boots", "count": 2}, {"query": "hat", "count": 1}]
    assert second["clickThroughRate"]["overall"] == pytest.approx(1 / 3)


FORGET = "mutation($user: String!) { forgetUser(userId: $user) { deletedEvents } }"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_live_stats_follows_a_forgotten_user(
    served: Served, tenant: Tenant, protocol: str
) -> None:
    await record(served, tenant, search("boots"))
    async with graphql_socket(served.ws_url, protocol=protocol, payload=token(tenant)) as socket:
        await socket.subscribe("1", LIVE, **PERIOD, interval=100)
        await socket.next("1")
        await record(served, tenant, search("alice's private query", userId="alice"))
        shown = (await socket.next("1"))["liveStats"]
        await gql(served, tenant, FORGET, user="alice")
        # The erasure changed the answer: it is sent, without the forgotten user's events (they
        # stayed on the dashboards, top queries included, until the next event).
        after = (await socket.next("1", within=5))["liveStats"]
        assert after == await stats_now(served, tenant)
    assert "alice's private query" in [row["query"] for row in shown["topQueries"]]
    assert after["topQueries"] == [{"query": "boots", "count": 1}]


async def test_live_stats_is_silent_when_nothing_it_counts_changed(
    served: Served, tenant: Tenant
) -> None:
    async with graphql_socket(served.ws_url, payload=token(tenant)) as socket:
        await socket.subscribe("1", LIVE, **PERIOD, interval=100)
        await socket.next("1")
        # Outside the period: stored and published, but the answer stays the same.
        await record(served, tenant, search("later", at="2025-06-02T01:00:00Z"))
        assert await socket.pending("1", 0.4) == []


async def test_live_stats_coalesces_changes_to_one_message_per_interval(
    served: Served, tenant: Tenant
) -> None:
    interval = 0.3
    loop = asyncio.get_running_loop()
    async with graphql_socket(served.ws_url, payload=token(tenant)) as socket:
        await socket.subscribe("1", LIVE, **PERIOD, interval=int(interval * 1000))
        await socket.next("1")
        started = loop.time()
        reader = asyncio.create_task(answers_until(socket, searches=12))
        for index in range(12):  # a change every 0.1 s or so
            await record(served, tenant, search(f"q{index}"))
            await asyncio.sleep(0.1)
        answers = await reader
        elapsed = loop.time() - started
    # Not one per change: at most one per interval (the first may come at once).
    assert 2 <= len(answers) <= elapsed / interval + 1, (len(answers), elapsed)
    assert answers[-1] == await stats_now(served, tenant)


async def test_a_subscriber_joining_a_feed_that_waits_out_its_pace_has_its_first_answer_at_once(
    served: Served, tenant: Tenant
) -> None:
    loop = asyncio.get_running_loop()
    async with graphql_socket(served.ws_url, payload=token(tenant)) as socket:
        await socket.subscribe("slow", LIVE, **PERIOD, interval=60_000)
        await socket.next("slow")
        await record(served, tenant, search("boots"))
        await asyncio.sleep(0.2)  # the feed has heard of it: its next answer waits for a minute
        joined = loop.time()
        await socket.subscribe("quick", LIVE, **PERIOD, interval=1000)
        first = (await socket.next("quick", within=5))["liveStats"]
        waited = loop.time() - joined
        assert first == await stats_now(served, tenant)
        assert first["searches"]["totalCount"] == 1
        # The slow subscriber still gets at most one answer a minute.
        assert await socket.pending("slow", 0.3) == []
    assert waited < 0.5, waited


async def test_live_stats_without_engines_follows_an_engine_created_before_it_started(
    served: Served, runtime: Runtime, tenant: Tenant
) -> None:
    await record(served, tenant, search("boots"))
    async with graphql_socket(served.ws_url, payload=token(tenant)) as socket:
        await socket.subscribe("before", LIVE, **PERIOD, interval=100)
        await socket.next("before")
        engine = await accounts.create_engine(database=runtime.database, account=tenant.account)
        # The same question, asked once the account has another engine.
        await socket.subscribe("after", LIVE, **PERIOD, interval=100)
        first = (await socket.next("after"))["liveStats"]
        await record(served, tenant, search("new engine", engine=engine.hashid))
        update = (await socket.next("after", within=5))["liveStats"]
        assert update == await stats_now(served, tenant)
        # The earlier subscription shares its answers: the stats of every engine, as `stats`.
        assert (await socket.next("before", within=5))["liveStats"] == update
    assert first["searches"]["totalCount"] == 1
    assert update["searches"]["totalCount"] == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_live_stats_without_engines_moves_with_an_engine_created_after_it_started(
    served: Served, runtime: Runtime, tenant: Tenant, protocol: str
) -> None:
    """Its answers count every engine of the account: an event in one created since (a new
    site's) changes them, so it is sent, as for the engines it started with."""
    async with graphql_socket(served.ws_url, protocol=protocol, payload=token(tenant)) as socket:
        await socket.subscribe("1", LIVE, **PERIOD, interval=100)
        await socket.next("1")
        engine = await accounts.create_engine(database=runtime.database, account=tenant.account)
        await record(served, tenant, search("new site", engine=engine.hashid))
        update = (await socket.next("1", within=5))["liveStats"]
        assert update == await stats_now(served, tenant)
        await record(served, tenant, search("new site", engine=engine.hashid, userId="alice"))
        await socket.next("1", within=5)
        await gql(served, tenant, FORGET, user="alice")
        after = (await socket.next("1", within=5))["liveStats"]
    assert update["searches"]["totalCount"] == 1
    assert after == update


async def answers_until(socket: GraphQLSocket, *, searches: int) -> list[Any]:
    """liveStats answers up to the first that counts this many searches."""
    answers: list[Any] = []
    while not answers or answers[-1]["searches"]["totalCount"] < searches:
        answers.append((await socket.next("1"))["liveStats"])
    return answers


async def test_live_stats_messages_are_spaced_by_the_interval(
    served: Served, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    times: list[float] = []
    write = fanout._Socket.write

    def noted(self: fanout._Socket, payload: str, written: Callable[[], None]) -> live.Sent:
        times.append(loop.time())
        return write(self, payload, written)

    # Timed where the server writes them: this client, in the server's loop, reads one only
    # after its recording request is answered, so under load two could look closer than sent.
    monkeypatch.setattr(fanout._Socket, "write", noted)
    async with graphql_socket(served.ws_url, payload=token(tenant)) as socket:
        await socket.subscribe("1", LIVE, **PERIOD, interval=250)
        await socket.next("1")
        for index in range(3):
            await record(served, tenant, search(f"q{index}"))
            await socket.next("1")
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.24, gaps


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_live_stats_reads_a_literal_limit(
    served: Served, tenant: Tenant, protocol: str
) -> None:
    texts = [f"q{i:02}" for i in range(15)]
    await record(served, tenant, *(search(text) for text in texts))
    twelve = LIVE.replace("topQueries(limit: 3)", "topQueries(limit: 12)")
    too_many = LIVE.replace("topQueries(limit: 3)", "topQueries(limit: 1001)")
    async with graphql_socket(served.ws_url, protocol=protocol, payload=token(tenant)) as socket:
        await socket.subscribe("1", twelve, **PERIOD, interval=100)
        first = (await socket.next("1"))["liveStats"]
        await socket.subscribe("2", too_many, **PERIOD, interval=100)
        with pytest.raises(OperationError) as refused:
            await socket.next("2")
    # One search each: ties broken by the text.
    assert first["topQueries"] == [{"query": text, "count": 1} for text in sorted(texts)[:12]]
    assert refused.value.code == "bad_params"


@pytest.mark.parametrize("interval", [99, 60_001, -1])
async def test_interval_is_bounded(served: Served, tenant: Tenant, interval: int) -> None:
    async with graphql_socket(served.ws_url, payload=token(tenant)) as socket:
        await socket.subscribe("1", LIVE, **PERIOD, interval=interval)
        with pytest.raises(OperationError) as refused:
            await socket.next("1")
    assert refused.value.code == "bad_params"
    assert "intervalMs must be between 100 and 60000" in refused.value.errors[0]["message"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_identical_subscriptions_share_one_computation(
    served: Served, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    computations = executions = encodings = 0

    async def counted(**kwargs: Any) -> Any:
        nonlocal computations
        computations += 1
        return await compute_stats(**kwargs)

    count_series = Stats._count

    def count(self: Stats, metric: Metric) -> Any:  # once per execution of the selection
        nonlocal executions
        executions += metric is Metric.CLICKS
        return count_series(self, metric)

    encode = subscriptions._json

    def encoded(value: object) -> str:  # once per answer sent to websockets, not per subscriber
        nonlocal encodings
        encodings += 1
        return encode(value)

    monkeypatch.setattr(live, "compute_stats", counted)
    monkeypatch.setattr(Stats, "_count", count)
    monkeypatch.setattr(subscriptions, "_json", encoded)
    async with (
        graphql_socket(served.ws_url, protocol=protocol, payload=token(tenant)) as one,
        graphql_socket(served.ws_url, protocol=protocol, payload=token(tenant)) as two,
    ):
        sockets = [(one, str(i)) for i in range(10)] + [(two, str(i)) for i in range(10)]
        for socket, op_id in sockets:
            await socket.subscribe(op_id, LIVE, **PERIOD, interval=100)
        for socket, op_id in sockets:
            await socket.next(op_id)
        assert (len(served.hub), served.hub.watchers) == (1, 20)
        before, executed, encoded_before = computations, executions, encodings
        await record(served, tenant, search("shared"))
        updates = [(await socket.next(op_id))["liveStats"] for socket, op_id in sockets]
        # One database computation, one GraphQL execution and one JSON encoding of the answer,
        # for the twenty subscribers.
        assert (computations - before, executions - executed, encodings - encoded_before) == (
            1,
            1,
            1,
        )
        assert all(u["searches"]["totalCount"] == 1 for u in updates)
        # Another selection is another question: another feed.
        await one.subscribe(
            "other", LIVE.replace("clicks { totalCount }", ""), **PERIOD, interval=100
        )
        await one.next("other")
        assert (len(served.hub), served.hub.watchers) == (2, 21)
    await until_idle(served)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_shared_answers_are_kept_no_longer_than_their_reports(
    served: Served, tenant: Tenant, protocol: str
) -> None:
    async with graphql_socket(served.ws_url, protocol=protocol, payload=token(tenant)) as socket:
        await socket.subscribe("1", LIVE, **PERIOD, interval=100)
        await socket.next("1")
        for index in range(5):
            await record(served, tenant, search(f"q{index}"))
            await socket.next("1")
    await until_idle(served)
    # Every answer was for a report nobody holds any more, once the feed's task has ended. The
    # last 256 were kept, each with its data and JSON: a dashboard of two months by hour (four
    # series) made a worker grow by 2.7 MB an answer, 680 MB in all, for one subscriber.
    await eventually(
        lambda: not [t for t in asyncio.all_tasks() if t.get_name().startswith("live")]
    )
    gc.collect()
    assert subscriptions.shared_answers() == 0


async def test_transport_ws_closes_without_connection_init_after_the_timeout(
    runtime: Runtime,
) -> None:
    settings = runtime.settings.model_copy(update={"graphql_connection_init_timeout_seconds": 0.2})
    async with (
        serving(create_app(settings, runtime=replace(runtime, settings=settings))) as port,
        connect(
            f"ws://127.0.0.1:{port}/graphql",
            subprotocols=[Subprotocol(TRANSPORT_WS)],
            proxy=None,
        ) as ws,
    ):
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4408
