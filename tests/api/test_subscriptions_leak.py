"""No leak: a thousand subscriptions come and go, and nothing of them stays behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.services.runtime import Runtime
from tests.conftest import Tenant
from tests.e2e.graphql_ws import eventually, graphql_socket
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
