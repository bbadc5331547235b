"""Slow subscribers are dropped, never waited for; disconnects free everything."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, TypeVar, cast

import pytest

from app.auth.principal import Principal
from app.broker.base import SlowSubscriber
from app.broker.memory import MemoryBroker
from app.domain.events import EventDraft, EventKind
from app.domain.periods import Granularity, Period
from app.domain.stats import Metric, StatsQuery
from app.main import create_app
from app.services import live
from app.services.record import Client, record_events
from app.services.runtime import Runtime
from app.services.stats import StatsReport
from tests.conftest import Tenant
from tests.e2e.graphql_ws import OperationError, eventually, graphql_socket
from tests.e2e.live_support import (
    EVENTS,
    LIVE,
    PERIOD,
    Served,
    served_app,
    serving,
    token,
    until_idle,
)

T = TypeVar("T")


@pytest.fixture
async def served(runtime: Runtime) -> AsyncIterator[Served]:
    async with served_app(runtime) as app:
        yield app


QUERY = StatsQuery(
    period=Period(
        start=datetime(2025, 6, 1, tzinfo=UTC),
        end=datetime(2025, 6, 2, tzinfo=UTC),
        zone=UTC,  # type: ignore[arg-type]
    ),
    granularity=Granularity.HOUR,
    metrics=frozenset({Metric.SEARCHES}),
)


async def principal_of(runtime: Runtime, tenant: Tenant) -> Principal:
    return await runtime.authenticator.authenticate(f"Token {tenant.api_key}")


async def searches(runtime: Runtime, principal: Principal, count: int = 1) -> None:
    drafts = [
        EventDraft(
            kind=EventKind.SEARCH, query="q", occurred_at=datetime(2025, 6, 1, 3, tzinfo=UTC)
        )
        for _ in range(count)
    ]
    await record_events(runtime=runtime, principal=principal, drafts=drafts, client=Client("test"))


async def collect(stream: AsyncGenerator[T, None], into: list[T]) -> None:
    async for item in stream:
        into.append(item)


async def test_a_stuck_event_subscriber_is_dropped_and_the_others_get_everything(
    runtime: Runtime, tenant: Tenant
) -> None:
    broker = MemoryBroker(queue_limit=5)
    runtime = replace(runtime, broker=broker)
    principal = await principal_of(runtime, tenant)
    stuck = live.recorded_events(runtime=runtime, principal=principal, engines=[], kinds=None)
    healthy = live.recorded_events(runtime=runtime, principal=principal, engines=[], kinds=None)
    received: list[live.RecordedEvent] = []
    consumer = asyncio.create_task(collect(healthy, received))
    first = asyncio.create_task(anext(stuck))  # reads one event, then never again
    await eventually(lambda: broker.subscriber_count == 2)
    for _ in range(20):
        await searches(runtime, principal)
    assert (await first).kind is EventKind.SEARCH
    # Dropped at the sixth event it did not read: no longer offered anything, its backlog freed.
    assert broker.subscriber_count == 1
    await eventually(lambda: len(received) == 20)
    with pytest.raises(SlowSubscriber) as dropped:
        await anext(stuck)
    assert dropped.value.code == "too_many_requests"
    consumer.cancel()
    await asyncio.wait([consumer])
    await healthy.aclose()
    assert broker.subscriber_count == 0


async def test_a_dropped_subscription_ends_with_an_error_on_the_wire(
    runtime: Runtime, tenant: Tenant
) -> None:
    runtime = replace(runtime, broker=MemoryBroker(queue_limit=5))
    async with serving(create_app(runtime.settings, runtime=runtime)) as port:
        url = f"ws://127.0.0.1:{port}/graphql"
        async with graphql_socket(url, payload=token(tenant)) as socket:
            await socket.subscribe("1", EVENTS)
            await eventually(lambda: runtime.broker.subscriber_count == 1)
            # One batch of ten events is delivered at once: five more than the queue holds.
            principal = await principal_of(runtime, tenant)
            await searches(runtime, principal, count=10)
            # Its backlog was freed at once: it ends with the error, not with stale events.
            with pytest.raises(OperationError) as dropped:
                await socket.next("1")
    assert dropped.value.code == "too_many_requests"
    assert runtime.broker.subscriber_count == 0


async def test_a_live_stats_watcher_that_stops_reading_is_dropped(
    runtime: Runtime, tenant: Tenant
) -> None:
    hub = live.LiveStats(runtime, backlog=2)
    principal = await principal_of(runtime, tenant)
    stuck = hub.watch(principal=principal, query=QUERY, interval_ms=100)
    healthy = hub.watch(principal=principal, query=QUERY, interval_ms=100)
    reports: list[Any] = []
    consumer = asyncio.create_task(collect(healthy, reports))
    assert (await anext(stuck)).series[Metric.SEARCHES].total_count == 0
    await eventually(lambda: len(reports) == 1 and hub.watchers == 2)
    for expected in range(1, 6):
        await searches(runtime, principal)
        await eventually(lambda: reports[-1].series[Metric.SEARCHES].total_count == expected)  # noqa: B023
    # The stuck one left three reports untaken (more than its backlog of 2): it was dropped.
    assert (len(hub), hub.watchers) == (1, 1)
    with pytest.raises(SlowSubscriber):
        await anext(stuck)
    consumer.cancel()
    await asyncio.wait([consumer])
    await healthy.aclose()
    assert (len(hub), hub.watchers, runtime.broker.subscriber_count) == (0, 0, 0)


async def test_a_failing_computation_ends_every_watcher_with_its_code(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.errors import Timeout

    hub = live.LiveStats(runtime)
    principal = await principal_of(runtime, tenant)
    watcher = hub.watch(principal=principal, query=QUERY, interval_ms=100)
    await anext(watcher)

    async def too_slow(**_: Any) -> Any:
        raise Timeout("the stats query ran past its deadline")

    monkeypatch.setattr(live, "compute_stats", too_slow)
    await searches(runtime, principal)
    with pytest.raises(Timeout):
        await anext(watcher)
    await eventually(lambda: (len(hub), runtime.broker.subscriber_count) == (0, 0))


async def test_subscriptions_end_with_the_connection(served: Served, tenant: Tenant) -> None:
    runtime: Runtime = served.app.state.runtime
    async with graphql_socket(served.ws_url, payload=token(tenant)) as socket:
        await socket.subscribe("1", LIVE, **PERIOD, interval=100)
        await socket.next("1")
        await socket.subscribe("2", EVENTS)
        await eventually(lambda: runtime.broker.subscriber_count == 2)
    await until_idle(served)


async def test_subscriptions_per_connection_are_limited(served: Served, tenant: Tenant) -> None:
    limit = served.app.state.runtime.settings.graphql_max_subscriptions
    async with graphql_socket(served.ws_url, payload=token(tenant)) as socket:
        for index in range(limit):
            await socket.subscribe(str(index), EVENTS)
        await socket.subscribe("one too many", EVENTS)
        with pytest.raises(OperationError) as refused:
            await socket.next("one too many")
    assert "Subscription limit reached" in refused.value.errors[0]["message"]


class HeldSink:
    """A sink whose client stops reading after its first message: every later write waits."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.written: list[Any] = []

    def send(self, report: Any, written: Any) -> live.Sent:
        self.sent.append(report)
        if len(self.sent) == 1:
            return live.Sent.SENT
        self.written.append(written)
        return live.Sent.WRITING


async def test_a_live_stats_sink_whose_writes_wait_is_dropped(
    runtime: Runtime, tenant: Tenant
) -> None:
    hub = live.LiveStats(runtime, backlog=2)
    principal = await principal_of(runtime, tenant)
    sink = HeldSink()
    stuck = hub.watch(principal=principal, query=QUERY, interval_ms=100, sink=sink)
    ending = asyncio.create_task(anext(stuck))  # yields nothing: the sink sends
    await eventually(lambda: len(sink.sent) == 1 and hub.watchers == 1)
    await searches(runtime, principal)
    await eventually(lambda: len(sink.sent) == 2)
    # Its second message is still being written: later answers are not sent, only counted.
    for _ in range(3):
        await searches(runtime, principal)
        await asyncio.sleep(0.25)  # each its own answer (the feed refreshes every 0.1 s)
    with pytest.raises(SlowSubscriber):
        await ending
    assert len(sink.sent) == 2
    await stuck.aclose()
    assert (len(hub), hub.watchers, runtime.broker.subscriber_count) == (0, 0, 0)


async def test_a_live_stats_sink_goes_on_once_a_write_finishes(
    runtime: Runtime, tenant: Tenant
) -> None:
    hub = live.LiveStats(runtime)
    principal = await principal_of(runtime, tenant)
    sink = HeldSink()
    watching = hub.watch(principal=principal, query=QUERY, interval_ms=100, sink=sink)
    waiting = asyncio.create_task(anext(watching))
    await eventually(lambda: len(sink.sent) == 1)
    await searches(runtime, principal)
    await eventually(lambda: len(sink.sent) == 2)
    await searches(runtime, principal)
    await asyncio.sleep(0.3)  # answered, but held back while the write goes on
    assert len(sink.sent) == 2
    sink.written[0]()  # the client read it: the latest answer goes
    await eventually(lambda: len(sink.sent) == 3)
    assert sink.sent[-1].series[Metric.SEARCHES].total_count == 2
    waiting.cancel()  # the subscription ends: the watcher leaves its feed
    await asyncio.wait([waiting])
    await watching.aclose()
    assert (len(hub), hub.watchers, runtime.broker.subscriber_count) == (0, 0, 0)


class TimedSink:
    """A sink whose client reads at once; it notes when each report went."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, Any]] = []

    def send(self, report: Any, written: Any) -> live.Sent:
        self.sent.append((asyncio.get_running_loop().time(), report))
        return live.Sent.SENT

    def gaps(self) -> list[float]:
        return [later - earlier for (earlier, _), (later, _) in pairwise(self.sent)]


def stand_in(name: str) -> StatsReport:
    """A report as far as a watcher is concerned: it only passes them on."""
    return cast(StatsReport, name)


async def test_a_watcher_out_of_step_takes_the_feeds_next_report_instead_of_a_stale_one() -> None:
    sink = TimedSink()
    watcher = live._Watcher(0.2, live.REPORT_BACKLOG, sink)
    due = True
    watcher.refresh_due = lambda: due
    loop = asyncio.get_running_loop()
    watcher.offer(stand_in("first"), loop.time())
    assert [report for _, report in sink.sent] == ["first"]  # at once
    await asyncio.sleep(0.05)
    watcher.offer(stand_in("between"), loop.time())  # too soon: held until its interval has passed
    await asyncio.sleep(0.3)
    # The interval passed while the feed was computing a fresher answer: that one is awaited.
    assert [report for _, report in sink.sent] == ["first"]
    assert watcher.awaits_feed
    watcher.offer(stand_in("fresher"), loop.time())
    assert [report for _, report in sink.sent] == ["first", "fresher"]
    assert not watcher.awaits_feed
    # With nothing coming from the feed, a held report goes when the interval has passed.
    due = False
    watcher.offer(stand_in("last"), loop.time())
    await asyncio.sleep(0.3)
    assert [report for _, report in sink.sent] == ["first", "fresher", "last"]
    assert min(sink.gaps()) >= 0.2
    watcher.close()


async def test_watchers_that_joined_at_different_moments_get_each_report_together(
    runtime: Runtime, tenant: Tenant
) -> None:
    hub = live.LiveStats(runtime)
    principal = await principal_of(runtime, tenant)
    early, late = TimedSink(), TimedSink()
    first = hub.watch(principal=principal, query=QUERY, interval_ms=400, sink=early)
    second = hub.watch(principal=principal, query=QUERY, interval_ms=400, sink=late)
    tasks = [asyncio.create_task(anext(first))]
    await eventually(lambda: len(early.sent) == 1)
    await asyncio.sleep(0.2)
    # Nothing happened since the first answer: the second watcher has it at once, and so its
    # interval runs half a beat behind the first one's.
    tasks.append(asyncio.create_task(anext(second)))
    await eventually(lambda: len(late.sent) == 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < 3.0:  # events keep coming: the feed answers every 0.4 s
        await searches(runtime, principal)
        await asyncio.sleep(0.05)
    # Once in step, each answer reaches both at the same moment, not half a beat apart.
    settled = [at for at, _ in late.sent if at - started > 1.5]
    assert len(settled) >= 2
    for at in settled:
        assert min(abs(at - other) for other, _ in early.sent) < 0.1
    for sink in (early, late):
        assert min(sink.gaps()) >= 0.4  # never more often than asked
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)
    await first.aclose()
    await second.aclose()
    assert (len(hub), hub.watchers, runtime.broker.subscriber_count) == (0, 0, 0)
