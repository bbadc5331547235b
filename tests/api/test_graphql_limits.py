"""GraphQL's hostile-query limits: depth, aliases, tokens, no batching, masked errors,
introspection as configured; websocket messages capped and read strictly; a subscription ends
when its JWT expires."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import jwt
import pytest
from graphql import get_introspection_query
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from app.auth.principal import Principal
from app.main import create_app
from app.services.limits import Access
from app.services.runtime import Runtime
from graphql_schema import queries
from graphql_schema.extensions import SUBSCRIPTION_OVER_HTTP
from tests.api.helpers import gql
from tests.conftest import Tenant
from tests.e2e.graphql_ws import (
    LEGACY_WS,
    TRANSPORT_WS,
    OperationError,
    graphql_socket,
)
from tests.e2e.live_support import EVENTS, LIVE, PERIOD, Served, served_app, serving, token

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

ENGINES = "{ engines { hashid } }"
DEEP = '{ stats(from: "2025-01-01", to: "2025-01-02") { searches { points { count } } } }'
# Introspection's lists nest into each other, each level multiplying the answer.
FAN_OUT = "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"


def aliases(count: int) -> str:
    return "{ " + " ".join(f"a{i}: engines {{ hashid }}" for i in range(count)) + " }"


def refusal(body: dict[str, Any]) -> str:
    """The refusal's message, after checking nothing ran and every error says bad_params."""
    assert body.get("data") is None, body
    assert {error["extensions"]["code"] for error in body["errors"]} == {"bad_params"}
    message: str = body["errors"][0]["message"]
    return message


async def test_depth_past_the_setting_is_refused(runtime: Runtime, tenant: Tenant) -> None:
    settings = runtime.settings.model_copy(update={"graphql_max_depth": 2})
    app = create_app(settings, runtime=replace(runtime, settings=settings))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as shallow:
        assert "exceeds maximum operation depth of 2" in refusal(await gql(shallow, tenant, DEEP))
        assert "errors" not in await gql(shallow, tenant, ENGINES)


async def test_introspection_nesting_is_refused(client: httpx.AsyncClient, tenant: Tenant) -> None:
    assert refusal(await gql(client, tenant, FAN_OUT)) == "Maximum introspection depth exceeded"
    # What GraphiQL and code generators send still works.
    standard = await gql(client, tenant, get_introspection_query(descriptions=True))
    assert standard["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_alias_flood_is_refused(client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = await gql(client, tenant, aliases(30))
    assert "errors" not in body
    assert "31 aliases found. Allowed: 30" in refusal(await gql(client, tenant, aliases(31)))


async def test_token_flood_is_refused(client: httpx.AsyncClient, tenant: Tenant) -> None:
    flood = "{ " + " ".join(["__typename"] * 10_001) + " }"
    assert "more than 10000 tokens" in refusal(await gql(client, tenant, flood))
    # A plain syntax error carries its code too.
    assert refusal(await gql(client, tenant, "{ engines")).startswith("Syntax Error")


async def test_batching_is_off(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        "/graphql", json=[{"query": ENGINES}, {"query": ENGINES}], headers=tenant.token
    )
    assert response.status_code == 400
    assert response.json() == {
        "errors": [{"message": "Batching is not enabled", "extensions": {"code": "bad_params"}}]
    }


async def test_introspection_is_on_by_default(client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = await gql(client, tenant, "{ __schema { queryType { name } } }")
    assert body == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


async def test_introspection_can_be_turned_off(runtime: Runtime, tenant: Tenant) -> None:
    settings = runtime.settings.model_copy(update={"graphql_introspection": False})
    app = create_app(settings, runtime=replace(runtime, settings=settings))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as closed:
        body = await gql(closed, tenant, "{ __schema { queryType { name } } }")
        assert "introspection" in refusal(body).lower()
        assert "errors" not in await gql(closed, tenant, ENGINES)


async def test_unexpected_errors_are_masked_and_logged(
    client: httpx.AsyncClient,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(**_: Any) -> None:
        raise RuntimeError("the database password is hunter2")

    monkeypatch.setattr(queries, "account_engines", broken)
    with caplog.at_level(logging.ERROR):
        body = await gql(client, tenant, ENGINES)
    [error] = body["errors"]
    assert error["message"] == "Unexpected error."
    assert error["extensions"] == {"code": "internal_error"}
    assert "hunter2" not in json.dumps(body)
    assert "hunter2" in caplog.text  # the operator finds the cause in the log


async def test_hostile_variables_in_a_get_request_are_refused(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    params = {"query": ENGINES, "variables": '{"a": 1, "a": 2}'}
    response = await client.get("/graphql", params=params, headers=tenant.token)
    assert response.status_code == 400
    assert response.json()["errors"][0] == {
        "message": "the variables parameter is refused: duplicate key 'a'",
        "extensions": {"code": "bad_params"},
    }


@pytest.fixture
async def served(runtime: Runtime) -> AsyncIterator[Served]:
    settings = runtime.settings.model_copy(update={"max_body_bytes": 4096})
    async with served_app(replace(runtime, settings=settings)) as app:
        yield app


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("credential", ["token", "anonymous"])
async def test_a_subscription_over_http_is_bad_params_before_anything_runs(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    method: str,
    credential: str,
) -> None:
    """A subscription streams over a websocket. Sent over HTTP it was executed as a query, its
    stream taken for a value: internal_error, logged with a traceback as the server's fault."""
    admitted: list[Access] = []

    async def admit_caller(principal: Principal | None, client: str, access: Access) -> None:
        admitted.append(access)

    monkeypatch.setattr(runtime.limits, "admit_caller", admit_caller)
    operation = {"query": "subscription { eventRecorded { type } }"}
    headers = tenant.token if credential == "token" else {}
    with caplog.at_level(logging.WARNING):
        if method == "POST":
            response = await client.post("/graphql", json=operation, headers=headers)
        else:
            response = await client.get("/graphql", params=operation, headers=headers)
    assert response.status_code == 400
    assert response.json() == {
        "errors": [{"message": SUBSCRIPTION_OVER_HTTP, "extensions": {"code": "bad_params"}}]
    }
    assert admitted == []  # refused before its execution, where operations are counted
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    # The same document names its query too: that operation runs.
    both = "subscription S { eventRecorded { type } } query Q { engines { hashid } }"
    ran = await client.post(
        "/graphql", json={"query": both, "operationName": "Q"}, headers=tenant.token
    )
    assert ran.json() == {"data": {"engines": [{"hashid": tenant.hashid}]}}


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
@pytest.mark.parametrize(
    "padding",
    [" " * 5000, "# " + "é" * 2500],  # the cap is in bytes: 5000 of them in either
    ids=["ascii", "two-byte-characters"],
)
async def test_a_websocket_message_over_the_cap_closes_the_connection(
    served: Served, tenant: Tenant, protocol: str, padding: str
) -> None:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    message = {"id": "1", "type": kind, "payload": {"query": EVENTS + padding}}
    async with graphql_socket(served.ws_url, protocol=protocol, payload=token(tenant)) as socket:
        await socket.ws.send(json.dumps(message, ensure_ascii=False))
        with pytest.raises(ConnectionClosed) as closed:
            await socket.next("1", within=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


async def test_a_hostile_websocket_message_closes_the_connection(
    served: Served, tenant: Tenant
) -> None:
    async with graphql_socket(served.ws_url, payload=token(tenant)) as socket:
        await socket.ws.send('{"id": "1", "id": "2", "type": "subscribe", "payload": {}}')
        with pytest.raises(ConnectionClosed) as closed:
            await socket.next("1", within=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4400


async def test_a_connection_init_over_the_cap_is_closed(served: Served, tenant: Tenant) -> None:
    async with connect(served.ws_url, subprotocols=[Subprotocol(TRANSPORT_WS)], proxy=None) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"x": "y" * 8000}}))
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


def short_lived(tenant: Tenant, seconds: float) -> dict[str, str]:
    now = time.time()
    claims = {"iat": int(now), "exp": now + seconds, "name": tenant.account}
    return {"Authorization": "Bearer " + jwt.encode(claims, tenant.api_key, algorithm="HS256")}


@pytest.mark.parametrize(
    ("protocol", "document", "variables"),
    [(TRANSPORT_WS, EVENTS, {}), (LEGACY_WS, LIVE, {**PERIOD, "interval": 100})],
    ids=["eventRecorded", "liveStats"],
)
async def test_a_subscription_ends_when_its_jwt_expires(
    served: Served, tenant: Tenant, protocol: str, document: str, variables: dict[str, Any]
) -> None:
    credential = short_lived(tenant, 1.2)
    async with graphql_socket(served.ws_url, protocol=protocol, payload=credential) as socket:
        await socket.subscribe("1", document, **variables)
        if document == LIVE:
            await socket.next("1")  # the answer at once, while the token is valid
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(OperationError) as ended:
            await socket.next("1", within=5)
        assert ended.value.code == "not_authenticated"
        assert loop.time() - started < 2.5
        # The connection's credential has expired: nothing new starts on it either.
        await socket.subscribe("2", EVENTS)
        with pytest.raises(OperationError) as refused:
            await socket.next("2", within=5)
        assert refused.value.code == "not_authenticated"


async def test_a_long_lived_jwt_keeps_its_subscription(served: Served, tenant: Tenant) -> None:
    async with graphql_socket(served.ws_url, payload=short_lived(tenant, 3600)) as socket:
        await socket.subscribe("1", LIVE, **PERIOD, interval=100)
        first = await socket.next("1")
        assert first["liveStats"]["searches"]["totalCount"] == 0
        assert await socket.pending("1", 0.3) == []


async def test_subscription_starts_count_as_reads(runtime: Runtime, tenant: Tenant) -> None:
    settings = runtime.settings.model_copy(update={"read_rate_limit": "2/second"})
    limited = replace(
        runtime, settings=settings, limits=type(runtime.limits)(settings, namespace="test")
    )
    async with (
        serving(create_app(settings, runtime=limited)) as port,
        graphql_socket(f"ws://127.0.0.1:{port}/graphql", payload=token(tenant)) as socket,
    ):
        for op_id in ("1", "2", "3"):
            await socket.subscribe(op_id, EVENTS)
        with pytest.raises(OperationError) as refused:
            await socket.next("3", within=5)
        assert refused.value.code == "too_many_requests"
        assert await socket.pending("1", 0.1) == []  # the first two run on
