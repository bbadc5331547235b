"""The Redis broker: events cross workers; a dead Redis costs live views, never an event."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import replace
from urllib.parse import urlsplit

import pytest

from app.broker.base import Message
from app.broker.redis import RedisBroker
from app.domain.events import EventDraft, EventKind
from app.services import live
from app.services.record import Client, account_channel, engine_channel, record_events
from app.services.runtime import Runtime, build_runtime
from app.settings import Settings
from tests.api.helpers import stored_events
from tests.conftest import Tenant
from tests.e2e.graphql_ws import eventually
from tests.e2e.live_support import redis_or_skip


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def search(runtime: Runtime, tenant: Tenant, query: str) -> None:
    principal = await runtime.authenticator.authenticate(f"Token {tenant.api_key}")
    draft = EventDraft(kind=EventKind.SEARCH, query=query)
    await record_events(runtime=runtime, principal=principal, drafts=[draft], client=Client("t"))


async def test_with_redis_down_events_are_stored_and_stay_live_on_this_worker(
    runtime: Runtime, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    broker = RedisBroker(f"redis://127.0.0.1:{closed_port()}/0", namespace="test")
    await broker.start()
    runtime = replace(runtime, broker=broker)
    try:
        async with broker.subscribe([engine_channel(tenant.hashid)]) as messages:
            with caplog.at_level(logging.WARNING, logger="app.broker.redis"):
                for index in range(3):
                    await asyncio.wait_for(search(runtime, tenant, f"q{index}"), 5)
            received = [await asyncio.wait_for(anext(messages), 5) for _ in range(3)]
    finally:
        await broker.stop()
    assert [m["query"] for m in received] == ["q0", "q1", "q2"]
    assert len(await stored_events(runtime)) == 3
    refused = [r for r in caplog.records if "could not publish to Redis" in r.getMessage()]
    assert len(refused) == 1  # once per outage, not once per event


class FrozenRedis:
    """A Redis that accepts connections but never answers (a stopped process, a stalled
    network)."""

    def __init__(self) -> None:
        self._connections: set[asyncio.StreamWriter] = set()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while await reader.read(65536):
                pass
        finally:
            self._connections.discard(writer)
            writer.close()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            server.close()
            for writer in tuple(self._connections):
                writer.close()
            await server.wait_closed()


async def test_recording_does_not_wait_for_a_redis_that_stopped_answering(
    runtime: Runtime, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    frozen = FrozenRedis()
    async with frozen.serving() as port:
        broker = RedisBroker(f"redis://127.0.0.1:{port}/0", namespace="test")
        await broker.start()
        try:
            with caplog.at_level(logging.WARNING, logger="app.broker.redis"):
                for index in range(3):
                    await search(replace(runtime, broker=broker), tenant, f"q{index}")
                # Every event was acknowledged while Redis had not answered: nobody waited for
                # the broker to give up on it (5 s, its socket timeout).
                assert not [r for r in caplog.records if "could not publish" in r.getMessage()]
        finally:
            await broker.stop()
    assert len(await stored_events(runtime)) == 3


@asynccontextmanager
async def relay(port: int, to: str) -> AsyncIterator[None]:
    """A TCP relay on the port to the Redis of the URL: that Redis answers there from now on."""
    target = urlsplit(to)
    pipes: set[asyncio.Task[None]] = set()

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await asyncio.open_connection(target.hostname, target.port or 6379)
        for source, sink in ((reader, upstream[1]), (upstream[0], writer)):
            task = asyncio.create_task(pipe(source, sink))
            pipes.add(task)

    server = await asyncio.start_server(connected, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)


async def test_a_lost_redis_subscription_is_logged_once_and_its_return_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = await redis_or_skip()
    port = closed_port()
    broker = RedisBroker(f"redis://127.0.0.1:{port}{urlsplit(url).path}", namespace="test")
    with caplog.at_level(logging.WARNING, logger="app.broker.redis"):
        await broker.start()
        try:
            await asyncio.sleep(2.5)  # nothing answers: tried three times
            async with relay(port, to=url):
                await asyncio.wait_for(broker.listening.wait(), 5)
                await asyncio.sleep(1.5)  # listening: nothing more to say
                await broker.stop()  # before its relay goes (stopping twice is harmless)
        finally:
            await broker.stop()
    said = [r.getMessage() for r in caplog.records]
    assert [m for m in said if "subscription lost" in m] == [
        "Redis subscription lost (ConnectionError); retrying every second"
    ]
    assert [m for m in said if "subscription restored" in m] == [
        "Redis subscription restored: other workers' events arrive again"
    ]


class SeveringRelay:
    """A TCP relay to a Redis that can go silent the way a network does: ``sever`` drops the
    connections so far on the Redis side (it forgets their subscriptions) and leaves the
    client's side open, with nothing more coming. New connections go through."""

    def __init__(self, to: str) -> None:
        self._target = urlsplit(to)
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await asyncio.open_connection(self._target.hostname, self._target.port or 6379)
        self._writers += [writer, upstream[1]]
        for source, sink in ((reader, upstream[1]), (upstream[0], writer)):
            self._pipes.add(asyncio.create_task(_pipe(source, sink)))

    def close(self) -> None:
        """Every connection so far closed on both sides, as Redis closes them when it stops."""
        self.sever()
        for writer in self._writers:
            writer.close()

    def sever(self) -> None:
        for task in self._pipes:
            task.cancel()
        self._pipes.clear()
        for writer in self._writers[1::2]:  # the Redis side of each connection
            writer.close()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            server.close()
            self.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with suppress(OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.close()


async def test_a_redis_subscription_gone_silent_is_noticed_and_subscribed_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = await redis_or_skip()
    severing = SeveringRelay(to=url)
    async with AsyncExitStack() as stack:
        port = await stack.enter_async_context(severing.serving())
        quiet = RedisBroker(
            f"redis://127.0.0.1:{port}{urlsplit(url).path}", namespace="test", heartbeat_seconds=0.2
        )
        other = RedisBroker(url, namespace="test")
        for broker in (quiet, other):
            await broker.start()
            stack.push_async_callback(broker.stop)
        await asyncio.wait_for(asyncio.gather(quiet.listening.wait(), other.listening.wait()), 5)
        messages = await stack.enter_async_context(quiet.subscribe(["events:e"]))
        with caplog.at_level(logging.WARNING, logger="app.broker.redis"):
            severing.sever()  # no close reaches the broker: only its own ping can tell
            await eventually(lambda: not quiet.listening.is_set())
            await asyncio.wait_for(quiet.listening.wait(), 5)
        await other.publish("events:e", [{"id": "after"}])
        assert (await asyncio.wait_for(anext(messages), 5))["id"] == "after"
    said = [r.getMessage() for r in caplog.records]
    assert "Redis subscription lost (ConnectionError); retrying every second" in said


async def test_while_its_redis_subscription_is_being_made_again_a_worker_hears_its_own_events(
    runtime: Runtime, tenant: Tenant
) -> None:
    url = await redis_or_skip()
    restarting = SeveringRelay(to=url)
    async with restarting.serving() as port:
        broker = RedisBroker(f"redis://127.0.0.1:{port}{urlsplit(url).path}", namespace="test")
        await broker.start()
        try:
            await asyncio.wait_for(broker.listening.wait(), 5)
            async with broker.subscribe([engine_channel(tenant.hashid)]) as messages:
                restarting.close()  # Redis restarted: the subscription is lost, Redis is back
                await eventually(lambda: not broker.listening.is_set())
                # Published to Redis while nothing of this worker listens there yet.
                await search(replace(runtime, broker=broker), tenant, "in the gap")
                heard = await asyncio.wait_for(anext(messages), 5)
        finally:
            await broker.stop()
    assert heard["query"] == "in the gap"


@asynccontextmanager
async def two_workers(url: str) -> AsyncIterator[list[RedisBroker]]:
    """Two workers' brokers on one Redis, both listening."""
    workers = [RedisBroker(url, namespace="test"), RedisBroker(url, namespace="test")]
    for broker in workers:
        await broker.start()
    try:
        await asyncio.wait_for(asyncio.gather(*(b.listening.wait() for b in workers)), 5)
        yield workers
    finally:
        for broker in workers:
            await broker.stop()


async def heard_on_the_other(
    runtime: Runtime, tenant: Tenant, workers: list[RedisBroker], query: str
) -> live.RecordedEvent:
    """The event of a search recorded on the first worker, as the second one's stream has it."""
    principal = await runtime.authenticator.authenticate(f"Token {tenant.api_key}")
    watching = live.recorded_events(
        runtime=replace(runtime, broker=workers[1]), principal=principal, engines=[], kinds=None
    )
    first = asyncio.create_task(anext(watching))
    await eventually(lambda: workers[1].subscriber_count == 1)
    await search(replace(runtime, broker=workers[0]), tenant, query)
    try:
        return await asyncio.wait_for(first, 5)
    finally:
        await watching.aclose()


async def test_an_event_published_by_one_worker_reaches_the_others(
    runtime: Runtime, tenant: Tenant
) -> None:
    async with two_workers(await redis_or_skip()) as workers:
        event = await heard_on_the_other(runtime, tenant, workers, "across")
    assert (event.query, event.engine) == ("across", tenant.hashid)


async def test_a_notice_given_many_times_while_waiting_reaches_the_other_workers_once(
    runtime: Runtime, tenant: Tenant
) -> None:
    """An account's feeds are told after every recording request; with Redis each notice is a
    message every worker reads, so the same one waiting to go out is sent once."""
    principal = await runtime.authenticator.authenticate(f"Token {tenant.api_key}")
    channel = account_channel(principal.account_id)
    async with AsyncExitStack() as stack:
        sender, listener = await stack.enter_async_context(two_workers(await redis_or_skip()))
        notices = await stack.enter_async_context(listener.subscribe([channel]))
        heard: list[Message] = []

        async def listen() -> None:
            async for notice in notices:
                heard.append(notice)

        listening = asyncio.create_task(listen())
        stack.callback(listening.cancel)
        for _ in range(3):
            before = len(heard)
            await asyncio.gather(
                *(search(replace(runtime, broker=sender), tenant, f"q{n}") for n in range(50))
            )
            await eventually(lambda: len(heard) > before)  # noqa: B023 (awaited at once)
            await asyncio.sleep(0.3)  # what else would come
            assert len(heard) - before < 10, heard[before:]  # for 50 recordings
    assert {notice["type"] for notice in heard} == {"recorded"}
    assert len(await stored_events(runtime)) == 150


def another_database(url: str) -> str:
    """The same Redis server, the database number before (15 -> 14, the rate limits' tests' one:
    pub/sub writes no key in it)."""
    parts = urlsplit(url)
    number = int(parts.path.strip("/") or 0)
    return parts._replace(path=f"/{(number - 1) % 16}").geturl()


@pytest.mark.parametrize("other", ["another database", "another secret"])
async def test_deployments_sharing_a_redis_hear_nothing_of_each_other(
    settings: Settings, tenant: Tenant, other: str
) -> None:
    url = await redis_or_skip()
    deployment = settings.model_copy(update={"broker_url": url})
    # A staging copy of the deployment (the same engine hashids), on the same Redis server.
    staging = deployment.model_copy(
        update={"broker_url": another_database(url)}
        if other == "another database"
        else {"secret_key": "staging-secret-key"}
    )
    async with AsyncExitStack() as stack:
        worker, colleague, stranger = runtimes = [
            build_runtime(deployment),
            build_runtime(deployment),
            build_runtime(staging),
        ]
        for runtime in runtimes:
            await runtime.start()
            stack.push_async_callback(runtime.stop)
        brokers = [redis_broker(runtime) for runtime in runtimes]
        await asyncio.wait_for(asyncio.gather(*(b.listening.wait() for b in brokers)), 5)
        channel = [engine_channel(tenant.hashid)]
        ours = await stack.enter_async_context(colleague.broker.subscribe(channel))
        theirs = await stack.enter_async_context(stranger.broker.subscribe(channel))
        await search(worker, tenant, "secret prod query")
        heard = await asyncio.wait_for(anext(ours), 5)
        assert heard["query"] == "secret prod query"  # the deployment's own workers hear it
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(theirs), 0.5)
    # Channels are named after a keyed digest of the secret, never the secret itself.
    assert "test-secret-key" not in brokers[0].prefix


def redis_broker(runtime: Runtime) -> RedisBroker:
    assert isinstance(runtime.broker, RedisBroker)
    return runtime.broker


@pytest.mark.parametrize("garbage", [b"not json", b"\xff\xfe", b"42", b"[1, 2]"])
async def test_a_message_that_is_not_ours_is_skipped_and_the_worker_hears_on(
    runtime: Runtime, tenant: Tenant, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever else is published under the deployment's channels (a tool, another version) is
    logged and skipped: it ended the worker's listener, which then heard no other worker again."""
    import redis.asyncio as aioredis

    url = await redis_or_skip()
    client = aioredis.from_url(url)
    try:
        async with two_workers(url) as workers:
            with caplog.at_level(logging.WARNING, logger="app.broker.redis"):
                await client.publish(workers[0].prefix + engine_channel(tenant.hashid), garbage)
                event = await heard_on_the_other(runtime, tenant, workers, "after the garbage")
    finally:
        await client.aclose()
    assert event.query == "after the garbage"
    assert any("not a message of this service" in r.getMessage() for r in caplog.records)
