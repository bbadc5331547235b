"""Both websocket protocols at their edges: how a connection is refused or timed out, and how
malformed messages, client mistakes and the operation limit are answered."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol

from app.main import create_app
from app.services.runtime import Runtime
from app.storage import directory
from app.storage.directory import AccountRecord
from tests.conftest import Tenant
from tests.e2e.graphql_ws import (
    LEGACY_WS,
    PROTOCOLS,
    TRANSPORT_WS,
    OperationError,
    eventually,
    graphql_socket,
)
from tests.e2e.live_support import EVENTS, LIVE, PERIOD, Served, served_app, serving, token

# Transport behaviour: one database backend is enough.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

WRONG_KEY = {"Authorization": "Token " + "0" * 40}
ENGINES = "{ engines { hashid } }"


@pytest.fixture
async def served(runtime: Runtime) -> AsyncIterator[Served]:
    async with served_app(runtime) as app:
        yield app


@asynccontextmanager
async def served_with(runtime: Runtime, **settings: Any) -> AsyncIterator[str]:
    """The service with other settings (and its own rate limits); yields its websocket URL."""
    changed = runtime.settings.model_copy(update=settings)
    limits = type(runtime.limits)(changed, namespace="test")
    app = create_app(changed, runtime=replace(runtime, settings=changed, limits=limits))
    async with serving(app) as port:
        yield f"ws://127.0.0.1:{port}/graphql"


@asynccontextmanager
async def raw_socket(url: str, protocol: str) -> AsyncIterator[ClientConnection]:
    async with connect(url, subprotocols=[Subprotocol(protocol)], proxy=None) as ws:
        yield ws


async def send(ws: ClientConnection, message: object) -> None:
    await ws.send(json.dumps(message))


def init(payload: object) -> dict[str, object]:
    return {"type": "connection_init", "payload": payload}


async def until_closed(ws: ClientConnection) -> tuple[list[Any], int | None, str | None]:
    """The messages received (keep-alives aside) until the server closed the connection, and
    its close code and reason (None, None: dropped without a close frame)."""
    received: list[Any] = []
    try:
        async with asyncio.timeout(5):
            while True:
                message = json.loads(await ws.recv())
                if message.get("type") != "ka":
                    received.append(message)
    except ConnectionClosed as closed:
        frame = closed.rcvd
        return received, frame.code if frame else None, frame.reason if frame else None


async def next_message(ws: ClientConnection) -> Any:
    """The next message, keep-alives aside."""
    async with asyncio.timeout(5):
        while (message := json.loads(await ws.recv())).get("type") == "ka":
            pass
    return message


async def refused_with(
    url: str, protocol: str, payload: Mapping[str, str] | str
) -> tuple[list[Any], int | None, str | None]:
    async with raw_socket(url, protocol) as ws:
        await send(ws, init(payload if isinstance(payload, str) else dict(payload)))
        return await until_closed(ws)


def storage_down(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    async def failing(session: AsyncSession, digest: str) -> AccountRecord | None:
        raise error

    monkeypatch.setattr(directory, "account_by_key_digest", failing)


class _InternalError(Exception):
    """A database error that says nothing of the storage being down (SQLSTATE XX000)."""

    sqlstate = "XX000"


async def test_a_page_of_an_origin_not_allowed_is_refused_at_the_upgrade(
    runtime: Runtime,
) -> None:
    allowed = Origin("https://dashboard.example")
    async with served_with(runtime, cors_origins=[allowed]) as url:
        for origin in (allowed, None):  # None: no Origin header, as from a client not a browser
            async with from_origin(url, origin):
                pass
        with pytest.raises(InvalidStatus) as refused:
            async with from_origin(url, Origin("https://elsewhere.example")):
                pass
    assert refused.value.response.status_code == 403


def from_origin(url: str, origin: Origin | None) -> connect:
    return connect(url, subprotocols=[Subprotocol(TRANSPORT_WS)], origin=origin, proxy=None)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_storage_down_at_connect_is_retry_later_not_a_bad_key(
    served: Served, tenant: Tenant, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage_down(monkeypatch, OperationalError("SELECT", None, OSError("connection refused")))
    received, code, reason = await refused_with(served.ws_url, protocol, token(tenant))
    # 1013 Try Again Later: graphql-ws clients (and the dashboard) retry; 4403 made them think
    # the key was bad and stop.
    assert (code, reason) == (1013, "unavailable")
    if protocol == LEGACY_WS:
        [error] = received
        assert error["type"] == "connection_error"
        assert error["payload"]["code"] == "unavailable"
    else:
        assert received == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_unexpected_error_at_connect_is_masked_closed_and_logged_once(
    served: Served,
    tenant: Tenant,
    protocol: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = _InternalError('could not read block 7 in file "secret_db/16384"')
    storage_down(monkeypatch, DBAPIError("SELECT", None, secret))
    with caplog.at_level(logging.ERROR):
        received, code, reason = await refused_with(served.ws_url, protocol, token(tenant))
    # Closed properly (it escaped as an ASGI exception: the socket dropped without a close frame).
    assert (code, reason) == (1011, "internal_error")
    if protocol == LEGACY_WS:
        assert received == [
            {
                "type": "connection_error",
                "payload": {"code": "internal_error", "message": "Unexpected error."},
            }
        ]
    else:
        assert received == []
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1
    assert logged[0].exc_info is not None
    assert "secret_db" in caplog.text  # the operator finds the cause in the log


async def test_failed_credentials_at_connect_are_rate_limited_by_address(
    runtime: Runtime, tenant: Tenant
) -> None:
    async with served_with(runtime, read_rate_limit="3/minute") as url:
        for _ in range(3):
            assert (await refused_with(url, TRANSPORT_WS, WRONG_KEY))[1:] == (4403, "Forbidden")
        # Past the read rate of failed credentials from this address, as at the HTTP doors:
        # not 4403 (bad key) nor 4429 (Strawberry's second connection_init).
        assert (await refused_with(url, TRANSPORT_WS, WRONG_KEY))[1:] == (
            1013,
            "too_many_requests",
        )
        received, code, _ = await refused_with(url, LEGACY_WS, WRONG_KEY)
        assert [m["type"] for m in received] == ["connection_error"]
        assert (received[0]["payload"]["code"], code) == ("too_many_requests", 1013)
        # The address's budget is the HTTP doors' one...
        async with httpx.AsyncClient(trust_env=False) as http:
            response = await http.post(
                url.replace("ws://", "http://"), json={"query": ENGINES}, headers=WRONG_KEY
            )
            assert response.status_code == 429
        # ...and the account is not slowed by someone guessing keys.
        async with graphql_socket(url, payload=token(tenant)) as socket:
            await socket.subscribe("1", ENGINES)
            assert "engines" in await socket.next("1")


async def test_graphql_ws_closes_without_connection_init_after_the_timeout(
    runtime: Runtime, tenant: Tenant
) -> None:
    async with served_with(runtime, graphql_connection_init_timeout_seconds=0.2) as url:
        async with raw_socket(url, LEGACY_WS) as silent:
            assert await until_closed(silent) == ([], 4408, "Connection initialisation timeout")
        # A connection that sent its connection_init in time is left open past the timeout.
        async with graphql_socket(url, protocol=LEGACY_WS, payload=token(tenant)) as socket:
            await asyncio.sleep(0.5)
            await socket.subscribe("1", LIVE, **PERIOD, interval=1000)
            assert (await socket.next("1"))["liveStats"]["searches"]["totalCount"] == 0


def keep_alive_tasks() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_coro().__qualname__.endswith("handle_keep_alive")  # type: ignore[union-attr]
    ]


async def test_graphql_ws_takes_one_connection_init(
    served: Served, tenant: Tenant, other_tenant: Tenant
) -> None:
    async with raw_socket(served.ws_url, LEGACY_WS) as ws:
        await send(ws, init(token(tenant)))
        assert (await next_message(ws))["type"] == "connection_ack"
        # A second one neither switches the connection's account nor starts another keep-alive.
        await send(ws, init(token(other_tenant)))
        assert await until_closed(ws) == ([], 4429, "Too many initialisation requests")
    await eventually(lambda: keep_alive_tasks() == [])


async def test_transport_ws_takes_a_null_connection_init_payload(
    served: Served, tenant: Tenant
) -> None:
    headers = {"Authorization": f"Token {tenant.api_key}"}
    async with connect(
        served.ws_url,
        subprotocols=[Subprotocol(TRANSPORT_WS)],
        additional_headers=headers,
        proxy=None,
    ) as ws:
        await send(ws, init(None))  # the protocol allows null: the upgrade's credential counts
        assert await next_message(ws) == {"type": "connection_ack"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_connection_init_payload_that_is_not_an_object_is_refused_as_bad_params(
    served: Served, tenant: Tenant, protocol: str
) -> None:
    # A credential sent as the payload itself, not in it.
    received, code, reason = await refused_with(served.ws_url, protocol, f"Token {tenant.api_key}")
    assert (code, reason) == (4400, "Invalid connection init payload")
    if protocol == LEGACY_WS:
        [error] = received
        assert error["type"] == "connection_error"
        assert error["payload"]["code"] == "bad_params"
        assert error["payload"]["message"].startswith("the connection_init payload is an object")
    else:
        assert received == []


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ({"type": "start", "id": "1"}, "a start message needs a payload (an object)"),
        ({"type": "start", "id": "1", "payload": "x"}, "a start message needs a payload"),
        ({"type": "start", "id": "1", "payload": {}}, "the payload needs a query (a string)"),
        ({"type": "stop"}, "a stop message needs an id (a string)"),
        ([1], "a message is a JSON object with a type"),
        # graphql-transport-ws's word for start: ignored, it left the client waiting for ever.
        (
            {"type": "subscribe", "id": "1", "payload": {"query": LIVE}},
            "unknown message type 'subscribe'",
        ),
    ],
    ids=[
        "start-without-payload",
        "payload-not-an-object",
        "no-query",
        "stop-without-id",
        "list",
        "another-protocols-type",
    ],
)
async def test_graphql_ws_answers_a_malformed_message_and_goes_on(
    served: Served, tenant: Tenant, message: object, problem: str
) -> None:
    async with graphql_socket(served.ws_url, protocol=LEGACY_WS, payload=token(tenant)) as socket:
        await send(socket.ws, message)
        error = await next_message(socket.ws)
        assert error["type"] == "error"
        assert error["payload"]["message"].startswith(problem)
        assert error["payload"]["extensions"] == {"code": "bad_params"}
        await socket.subscribe("2", LIVE, **PERIOD, interval=1000)
        assert (await socket.next("2"))["liveStats"]["searches"]["totalCount"] == 0


@pytest.mark.parametrize(
    "message",
    [
        {"type": "subscribe", "id": "1", "payload": "x"},
        {"type": "subscribe", "id": "1", "payload": {"query": ENGINES, "variables": [1]}},
        {"type": "complete", "id": ["1"]},
        "shoes",
    ],
    ids=["payload-not-an-object", "variables-not-an-object", "id-not-a-string", "string"],
)
async def test_transport_ws_closes_on_a_malformed_message_with_4400(
    served: Served, tenant: Tenant, message: object
) -> None:
    async with graphql_socket(served.ws_url, payload=token(tenant)) as socket:
        await send(socket.ws, message)
        received, code, _ = await until_closed(socket.ws)
    assert (received, code) == ([], 4400)


@pytest.mark.parametrize(("protocol", "code"), [(TRANSPORT_WS, 4400), (LEGACY_WS, 1002)])
async def test_a_binary_frame_closes_the_connection(
    served: Served, tenant: Tenant, protocol: str, code: int
) -> None:
    async with graphql_socket(served.ws_url, protocol=protocol, payload=token(tenant)) as socket:
        await socket.ws.send(json.dumps({"type": "ping"}).encode())
        received, closed_with, reason = await until_closed(socket.ws)
    assert (received, closed_with, reason) == ([], code, "WebSocket message type must be text")


@pytest.mark.parametrize("kind", ["query", "mutation"])
async def test_graphql_ws_refuses_queries_and_mutations_as_bad_params(
    served: Served, tenant: Tenant, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    document = {
        "query": ENGINES,
        "mutation": 'mutation { recordVisit(input: {store: "s"}) { id } }',
    }[kind]
    async with graphql_socket(served.ws_url, protocol=LEGACY_WS, payload=token(tenant)) as socket:
        with caplog.at_level(logging.ERROR):
            await socket.subscribe("1", document)
            with pytest.raises(OperationError) as refused:
                await socket.next("1")
    assert refused.value.code == "bad_params"
    assert refused.value.errors[0]["message"].startswith(
        f"{kind.replace('y', 'ie')}s are not run over the legacy graphql-ws protocol"
    )
    assert caplog.records == []  # a client's mistake, not the server's


TWO_OPERATIONS = "subscription a { eventRecorded { id } } subscription b { eventRecorded { type } }"


async def test_an_unknown_operation_name_is_bad_params_over_graphql_ws(
    served: Served, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    named = {"query": TWO_OPERATIONS, "operationName": "zzz"}
    fragment_only = {"query": "fragment F on Subscription { eventRecorded { id } }"}
    async with graphql_socket(served.ws_url, protocol=LEGACY_WS, payload=token(tenant)) as socket:
        with caplog.at_level(logging.ERROR):
            await send(socket.ws, {"type": "start", "id": "1", "payload": named})
            with pytest.raises(OperationError) as unknown:
                await socket.next("1")
            await send(socket.ws, {"type": "start", "id": "2", "payload": fragment_only})
            with pytest.raises(OperationError) as none:
                await socket.next("2")
    assert (unknown.value.code, unknown.value.errors[0]["message"]) == (
        "bad_params",
        'Unknown operation named "zzz".',
    )
    assert (none.value.code, none.value.errors[0]["message"]) == (
        "bad_params",
        "the document holds no operation to run",
    )
    assert caplog.records == []


async def test_an_unknown_operation_name_closes_graphql_transport_ws_with_4400(
    served: Served, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    async with graphql_socket(served.ws_url, payload=token(tenant)) as socket:
        with caplog.at_level(logging.ERROR):
            payload = {"query": TWO_OPERATIONS, "operationName": "zzz"}
            await send(socket.ws, {"type": "subscribe", "id": "1", "payload": payload})
            received, code, reason = await until_closed(socket.ws)
    # Strawberry's answer on this protocol, which the masking used to hide.
    assert (received, code, reason) == ([], 4400, 'Unknown operation named "zzz".')
    assert caplog.records == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_operation_limit_says_too_many_requests(
    runtime: Runtime, tenant: Tenant, protocol: str
) -> None:
    async with (
        served_with(runtime, graphql_max_subscriptions=2) as url,
        graphql_socket(url, protocol=protocol, payload=token(tenant)) as socket,
    ):
        for op_id in ("1", "2", "3"):
            await socket.subscribe(op_id, EVENTS)
        with pytest.raises(OperationError) as refused:
            await socket.next("3")
        assert await socket.pending("1", 0.1) == []  # the first two run on
    [error] = refused.value.errors
    assert error["message"].startswith("Subscription limit reached")
    assert error["extensions"] == {"code": "too_many_requests"}
