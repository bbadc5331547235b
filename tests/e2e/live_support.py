"""What the subscription tests share: a real server in the test's loop, documents, helpers."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from app.main import create_app
from app.services import live
from app.services.runtime import Runtime
from graphql_schema.app import SearchStatsGraphQL
from tests.conftest import BROWSER_UA, REQUIRE_POSTGRES, Tenant
from tests.e2e.graphql_ws import eventually

EVENTS = """
subscription($engines: [ID!], $types: [EventType!]) {
  eventRecorded(engines: $engines, types: $types) {
    id engine type occurredAt queryId query documentId device isBot
  }
}"""
STATS_FIELDS = """
    searches { points { start count } totalCount }
    clicks { totalCount }
    clickThroughRate { overall points { value } }
    topQueries(limit: 3) { query count }
"""
LIVE = f"""
subscription($from: String!, $to: String!, $engines: [ID!], $interval: Int!) {{
  liveStats(from: $from, to: $to, granularity: HOUR, engines: $engines, intervalMs: $interval) {{
    {STATS_FIELDS}
  }}
}}"""
STATS = f"""
query($from: String!, $to: String!, $engines: [ID!]) {{
  stats(from: $from, to: $to, granularity: HOUR, engines: $engines) {{ {STATS_FIELDS} }}
}}"""
RECORD = """
mutation($input: [EventInput!]!) { recordEvents(input: $input) { id queryId } }"""
PERIOD = {"from": "2025-06-01T00:00:00Z", "to": "2025-06-01T06:00:00Z"}


@dataclass(frozen=True)
class Served:
    """The app on a real uvicorn server in this event loop."""

    app: Starlette
    http: httpx.AsyncClient
    ws_url: str

    @property
    def hub(self) -> live.LiveStats:
        view = next(r.app for r in self.app.routes if isinstance(r, WebSocketRoute))
        assert isinstance(view, SearchStatsGraphQL)
        return view.live


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[int]:
    """Serve the app on a free loopback port until the block ends; yields the port."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, within=10)
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@asynccontextmanager
async def served_app(runtime: Runtime) -> AsyncIterator[Served]:
    """The service on a real server in this event loop, with an HTTP client for it."""
    app = create_app(runtime.settings, runtime=runtime)
    async with serving(app) as port:
        base = f"http://127.0.0.1:{port}"
        headers = {"User-Agent": BROWSER_UA}
        async with httpx.AsyncClient(base_url=base, trust_env=False, headers=headers) as http:
            yield Served(app=app, http=http, ws_url=f"ws://127.0.0.1:{port}/graphql")


async def until_idle(served: Served) -> None:
    """Every subscription ended: nothing left on the broker or in the hub."""
    runtime: Runtime = served.app.state.runtime
    await eventually(
        lambda: (runtime.broker.subscriber_count, len(served.hub), served.hub.watchers) == (0, 0, 0)
    )


def token(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Token {tenant.api_key}"}


async def gql(served: Served, tenant: Tenant, query: str, **variables: Any) -> Any:
    response = await served.http.post(
        "/graphql", json={"query": query, "variables": variables}, headers=token(tenant)
    )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


async def record(served: Served, tenant: Tenant, *events: dict[str, Any]) -> list[Any]:
    data = await gql(served, tenant, RECORD, input=list(events))
    return list(data["recordEvents"])


def search(query: str, at: str = "2025-06-01T01:30:00Z", **fields: Any) -> dict[str, Any]:
    return {"search": {"query": query, "occurredAt": at, **fields}}


def click(query_id: str, at: str = "2025-06-01T01:40:00Z") -> dict[str, Any]:
    return {"click": {"queryId": query_id, "documentId": "doc-1", "rank": 0, "occurredAt": at}}


REDIS_URL = os.environ.get("SEARCHSTATS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


async def redis_or_skip() -> str:
    """The test Redis; skipped when it does not answer, unless the run requires it (CI)."""
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    client = aioredis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as error:
        message = f"Redis at {REDIS_URL} does not answer ({type(error).__name__})"
        if REQUIRE_POSTGRES:
            pytest.fail(message + " and this run requires it", pytrace=False)
        pytest.skip(message)
    finally:
        await client.aclose()
    return REDIS_URL
