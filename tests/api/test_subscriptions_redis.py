"""The Redis broker: events cross workers; a dead Redis costs live views, never an event."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import replace

import pytest

from app.broker.redis import RedisBroker
from app.domain.events import EventDraft, EventKind
from app.services import live
from app.services.record import Client, engine_channel, record_events
from app.services.runtime import Runtime
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
    broker = RedisBroker(f"redis://127.0.0.1:{closed_port()}/0")
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


async def test_an_event_published_by_one_worker_reaches_the_others(
    runtime: Runtime, tenant: Tenant
) -> None:
    url = await redis_or_skip()
    workers = [RedisBroker(url), RedisBroker(url)]
    for broker in workers:
        await broker.start()
    try:
        await asyncio.wait_for(asyncio.gather(*(b.listening.wait() for b in workers)), 5)
        principal = await runtime.authenticator.authenticate(f"Token {tenant.api_key}")
        watching = live.recorded_events(
            runtime=replace(runtime, broker=workers[1]), principal=principal, engines=[], kinds=[]
        )
        first = asyncio.create_task(anext(watching))
        await eventually(lambda: workers[1].subscriber_count == 1)
        await search(replace(runtime, broker=workers[0]), tenant, "across")
        event = await asyncio.wait_for(first, 5)
        await watching.aclose()
    finally:
        for broker in workers:
            await broker.stop()
    assert (event.query, event.engine) == ("across", tenant.hashid)
