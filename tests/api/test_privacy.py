"""Neither the client's address nor its User-Agent is stored or logged, whatever the door; robots
are flagged, stored, and left out of stats unless asked for."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import SQLModel

from app.auth.addresses import ClientAddresses
from app.main import create_app
from app.services.runtime import Runtime
from tests.api.helpers import stored_events
from tests.conftest import Tenant

DIRECT = "203.0.113.77"  # a client calling directly
BEHIND_PROXY = "198.51.100.23"  # a client the trusted proxy forwards
PROXY = "10.0.0.1"
PROBE_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 PrivacyProbe/9.8.7-unique"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
ITEM = "43f9bb3e-f90d-458f-9858-7e4589481d18"
SEARCH = {
    "query": "private words",
    "page": {"size": 10, "totalElements": 3, "totalPages": 1, "number": 0},
    "sort": {"by": "score", "order": "desc"},
}
CLICK = {
    "type": "click",
    "query_id": "q1",
    "document_id": "d1",
    "content_source_id": "c1",
    "page": 1,
    "rank": 0,
    "event": "api",
}


@pytest.fixture
async def clients(
    runtime: Runtime,
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """A client calling directly, and one behind a trusted proxy that sends X-Forwarded-For."""
    settings = runtime.settings.model_copy(update={"trusted_proxies": [PROXY]})
    addresses = ClientAddresses(trusted_proxies=[PROXY], secret="test-secret-key")
    app = create_app(settings, runtime=replace(runtime, settings=settings, addresses=addresses))
    headers = {"User-Agent": PROBE_UA}
    async with (
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(DIRECT, 50123)),
            base_url="http://testserver",
            headers=headers,
        ) as direct,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(PROXY, 50124)),
            base_url="http://testserver",
            headers=headers | {"X-Forwarded-For": BEHIND_PROXY},
        ) as forwarded,
    ):
        yield direct, forwarded


async def every_door(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """Events through every door, a few refusals too, each answered as it should be."""
    token = tenant.token | {"User-Agent": PROBE_UA}
    answers = [
        await client.post(
            "/api/statistics/viewevents", json={"targetId": ITEM, "targetType": "item"}
        ),
        await client.post("/api/statistics/searchevents", json=SEARCH),
        await client.post(
            "/api/statistics/collect", json={"type": "view", "targetId": ITEM, "targetType": "item"}
        ),
        # Doofinder's deprecated fields carry the address and User-Agent themselves.
        await client.post(
            "/api/v2/stats/visit",
            json={"store": "main", "ip": DIRECT, "user_agent": PROBE_UA, "user_id": "u1"},
            headers=token,
        ),
        await client.post("/api/ws/v1/analytics/event", json=CLICK, headers=token),
        await client.post(
            "/graphql",
            json={"query": 'mutation { recordSearch(input: {query: "q", sessionId: "s"}) { id } }'},
            headers=token,
        ),
        await client.get(
            "/api/v2/stats/clicks", params={"from": "20250101", "to": "20250102"}, headers=token
        ),
    ]
    assert [a.status_code for a in answers] == [201, 201, 201, 200, 200, 200, 200], [
        a.text for a in answers
    ]
    refusals = [
        await client.post("/api/statistics/viewevents", json={"targetId": "nope"}),
        await client.post("/api/v2/stats/visit", json={"store": "main"}),
        await client.post("/graphql", json={"query": "{ nope }"}, headers=token),
    ]
    assert [r.status_code for r in refusals] == [400, 401, 200]


async def dump(runtime: Runtime) -> str:
    """Every column of every row of every table, as text."""
    rows: list[str] = []
    async with runtime.database.engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            result = await conn.execute(text(f'SELECT * FROM "{table.name}"'))
            rows += [repr(tuple(row)) for row in result]
    return "\n".join(rows)


def logged(records: list[logging.LogRecord]) -> str:
    """Each record's message and every attribute it carries (structured fields included)."""
    return "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in records)


async def test_neither_address_nor_user_agent_is_stored_or_logged(
    runtime: Runtime,
    tenant: Tenant,
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for client in clients:
        await every_door(client, tenant)
    events = await stored_events(runtime)
    assert len(events) == 12
    assert {e.device for e in events} == {"desktop"}  # what the User-Agent was kept for
    stored, logs = await dump(runtime), logged(caplog.records)
    assert "POST /api/statistics/viewevents 201" in logs  # the access log did log them
    for secret in (DIRECT, BEHIND_PROXY, PROBE_UA, "PrivacyProbe"):
        assert secret not in stored
        assert secret not in logs


async def test_the_access_log_tells_clients_apart_by_pseudonym(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="searchstats.access")
    direct, forwarded = clients
    for client in (direct, direct, forwarded):
        await client.get("/healthz?query=private+words")
    lines = [r for r in caplog.records if r.name == "searchstats.access"]
    pseudonyms = [
        getattr(r, "client", None) or r.getMessage().rpartition("client=")[2] for r in lines
    ]
    assert len(lines) == 3
    assert pseudonyms[0] == pseudonyms[1] != pseudonyms[2]
    assert all(len(p) == 16 for p in pseudonyms)
    assert "private" not in logged(lines)  # no query string


@pytest.mark.parametrize("door", ["dspace", "doofinder", "graphql"])
async def test_robots_are_stored_flagged_and_left_out_of_stats(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant, door: str
) -> None:
    for user_agent in (GOOGLEBOT, PROBE_UA):
        await record_a_search(client, tenant, door, user_agent)
    events = await stored_events(runtime)
    assert sorted(e.is_bot for e in events) == [False, True]
    assert await searches(client, tenant) == 1
    assert await searches(client, tenant, include_bots=True) == 2


SERVER_LIBRARIES = ("python-requests/2.32.3", "axios/1.7.2", "curl/8.5.0", "Go-http-client/1.1")


@pytest.mark.parametrize("door", ["doofinder", "graphql"])
@pytest.mark.parametrize("user_agent", SERVER_LIBRARIES)
async def test_a_sites_server_recording_with_its_key_is_not_a_robot(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant, door: str, user_agent: str
) -> None:
    # The site's own integration: its library says nothing of the user's device.
    await record_a_search(client, tenant, door, user_agent)
    [event] = await stored_events(runtime)
    assert (event.is_bot, event.device) == (False, "unknown")
    assert await searches(client, tenant) == 1


@pytest.mark.parametrize("user_agent", SERVER_LIBRARIES)
async def test_an_http_library_at_an_anonymous_door_is_a_robot(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant, user_agent: str
) -> None:
    # No credential: a script posting DSpace's statistics is what COUNTER calls a robot.
    await record_a_search(client, tenant, "dspace", user_agent)
    [event] = await stored_events(runtime)
    assert event.is_bot is True
    assert await searches(client, tenant) == 0


async def test_a_crawler_with_a_key_is_still_a_robot(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant
) -> None:
    await record_a_search(client, tenant, "graphql", GOOGLEBOT)
    [event] = await stored_events(runtime)
    assert event.is_bot is True


async def record_a_search(
    client: httpx.AsyncClient, tenant: Tenant, door: str, user_agent: str
) -> None:
    ua = {"User-Agent": user_agent}
    if door == "dspace":
        response = await client.post("/api/statistics/searchevents", json=SEARCH, headers=ua)
    elif door == "doofinder":
        response = await client.post(
            "/api/v2/stats/visit", json={"store": "main"}, headers=tenant.token | ua
        )
    else:
        document = 'mutation { recordSearch(input: {query: "crawl"}) { id } }'
        response = await client.post(
            "/graphql", json={"query": document}, headers=tenant.token | ua
        )
    assert response.status_code in (200, 201), response.text


async def searches(client: httpx.AsyncClient, tenant: Tenant, *, include_bots: bool = False) -> Any:
    fields = "searches { totalCount } visits { totalCount }"
    today = datetime.now(UTC).date()
    document = (
        f'{{ stats(from: "{today - timedelta(days=1)}", to: "{today + timedelta(days=1)}", '
        f"filter: {{includeBots: {str(include_bots).lower()}}}) {{ {fields} }} }}"
    )
    response = await client.post("/graphql", json={"query": document}, headers=tenant.token)
    assert "errors" not in response.json(), response.text
    stats = response.json()["data"]["stats"]
    return stats["searches"]["totalCount"] + stats["visits"]["totalCount"]
