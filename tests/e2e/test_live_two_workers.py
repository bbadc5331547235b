"""Two ``searchstats serve`` processes sharing PostgreSQL and Redis: live views cross workers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BROWSER_UA
from tests.e2e.graphql_ws import graphql_socket
from tests.e2e.live_support import EVENTS, redis_or_skip
from tests.e2e.servers import ServeProcess, searchstats_serve

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

LIVE_VISITS = """
subscription($from: String!, $to: String!) {
  liveStats(from: $from, to: $to, intervalMs: 100) { visits { totalCount } searches { totalCount } }
}"""
TODAY = datetime.now(UTC).date()
PERIOD = {"from": str(TODAY - timedelta(days=1)), "to": str(TODAY + timedelta(days=1))}


@pytest.fixture
def backend() -> str:
    """Workers on several processes share one database: PostgreSQL."""
    return "postgresql"


@pytest.fixture
def workers(
    empty_database_url: str, tmp_path: Path, redis_url: str
) -> Iterator[tuple[ServeProcess, ServeProcess, str]]:
    env = {
        "SEARCHSTATS_DATABASE_URL": empty_database_url,
        "SEARCHSTATS_BROKER_URL": redis_url,
        "SEARCHSTATS_SECRET_KEY": "two-workers",
    }
    # One at a time: the first start migrates the fresh database and creates the account.
    with searchstats_serve(env, tmp_path, name="a") as first:
        bootstrap = first.bootstrap()
        assert bootstrap is not None, first.output()
        with searchstats_serve(env, tmp_path, name="b") as second:
            yield first, second, bootstrap[0]


@pytest.fixture
def redis_url() -> str:
    return asyncio.run(redis_or_skip())


async def test_an_event_recorded_on_one_worker_reaches_subscribers_on_the_other(
    workers: tuple[ServeProcess, ServeProcess, str],
) -> None:
    a, b, key = workers
    token = {"Authorization": f"Token {key}"}
    async with (
        graphql_socket(a.ws_url, payload=token) as on_a,
        graphql_socket(b.ws_url, payload=token) as on_b,
        httpx.AsyncClient(trust_env=False, headers={**token, "User-Agent": BROWSER_UA}) as http,
    ):
        await on_a.subscribe("events", EVENTS)
        await on_a.subscribe("live", LIVE_VISITS, **PERIOD)
        await on_b.subscribe("events", EVENTS, types=["SEARCH"])
        assert (await on_a.next("live"))["liveStats"]["visits"]["totalCount"] == 0

        visit = await http.post(f"{b.base_url}/api/v2/stats/visit", json={"store": "s1"})
        assert visit.status_code == 200, visit.text
        seen_on_a = await _next_event(on_a, kind="VISIT")
        live = await _until(on_a, "live", lambda d: d["liveStats"]["visits"]["totalCount"] == 1)

        searched = await _graphql(http, a, 'mutation { recordSearch(input: {query: "x"}) { id } }')
        seen_on_b = await _next_event(on_b, kind="SEARCH")
    assert seen_on_a["type"] == "VISIT"
    assert live["liveStats"]["searches"]["totalCount"] == 0
    assert seen_on_b["id"] == searched["recordSearch"]["id"]


async def _graphql(http: httpx.AsyncClient, worker: ServeProcess, query: str) -> Any:
    response = await http.post(f"{worker.base_url}/graphql", json={"query": query})
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


async def _next_event(socket: Any, *, kind: str) -> Any:
    event = (await socket.next("events", within=10))["eventRecorded"]
    assert event["type"] == kind, event
    return event


async def _until(socket: Any, op_id: str, done: Any) -> Any:
    while True:
        data = await socket.next(op_id, within=10)
        if done(data):
            return data
