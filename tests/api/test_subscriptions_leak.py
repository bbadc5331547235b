"""No leak: a thousand subscriptions come and go, and nothing of them stays behind."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import pytest

from app.services import live
from app.services.runtime import Runtime
from tests.conftest import Tenant
from tests.e2e.graphql_ws import PROTOCOLS, eventually, graphql_socket
from tests.e2e.live_support import (
    EVENTS,
    LIVE,
    PERIOD,
    Served,
    record,
    search,
    served_app,
    token,
    until_idle,
)

CYCLES = 1000
PER_CONNECTION = 50


@pytest.fixture
def backend() -> str:
    """The broker and the hub are the same on either database: one is enough here."""
    return "sqlite"


@pytest.fixture
async def served(runtime: Runtime) -> AsyncIterator[Served]:
    async with served_app(runtime) as app:
        yield app


@pytest.mark.timeout(60)
async def test_no_leak_across_1000_subscribe_and_unsubscribe_cycles(
    served: Served, tenant: Tenant
) -> None:
    await record(served, tenant, search("seed"))
    baseline = len(asyncio.all_tasks())
    live = {**PERIOD, "interval": 100, "engines": [tenant.hashid]}
    for first in range(0, CYCLES, PER_CONNECTION):
        async with graphql_socket(served.ws_url, payload=token(tenant)) as socket:
            for cycle in range(first, first + PER_CONNECTION - 1):
                await socket.subscribe(f"s{cycle}", LIVE, **live)
                await socket.subscribe(f"e{cycle}", EVENTS)
                if cycle % 4 == 0:  # else unsubscribed while still starting
                    assert (await socket.next(f"s{cycle}"))["liveStats"]
                await socket.complete(f"s{cycle}")
                await socket.complete(f"e{cycle}")
            # The last cycle of each connection ends by dropping it, both still running.
            last = first + PER_CONNECTION - 1
            await socket.subscribe(f"s{last}", LIVE, **live)
            await socket.subscribe(f"e{last}", EVENTS)
            await socket.next(f"s{last}")
    await until_idle(served)
    await eventually(lambda: len(asyncio.all_tasks()) <= baseline)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_nothing_of_a_closed_connections_subscriptions_stays_in_memory(
    served: Served, tenant: Tenant, protocol: str
) -> None:
    for _ in range(2):
        async with graphql_socket(
            served.ws_url, protocol=protocol, payload=token(tenant)
        ) as socket:
            for index in range(3):  # closed with its subscriptions running
                await socket.subscribe(str(index), LIVE, **PERIOD, interval=100 + index)
                await socket.next(str(index))
    await until_idle(served)
    await eventually(
        lambda: not [t for t in asyncio.all_tasks() if t.get_name().startswith("live")]
    )
    gc.collect()
    # Over graphql-ws, an operation ended by the connection's close failed to send its
    # `complete`; that error, with its traceback, kept a feed, its watcher and its last report
    # (all its data) alive, one set per closed connection.
    assert [type(o).__name__ for o in gc.get_objects() if isinstance(o, live._Feed)] == []
