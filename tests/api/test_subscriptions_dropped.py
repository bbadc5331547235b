"""Clients that go without a word (a tab closed, a phone off its network) while results are on
their way: their subscriptions end with the connection, and nothing is logged as an error."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
from starlette.websockets import WebSocketDisconnected as ClosedMeanwhile
from strawberry.http.exceptions import WebSocketDisconnected

from app.services.runtime import Runtime
from graphql_schema.websocket import TransportWSHandler
from tests.conftest import Tenant
from tests.e2e.graphql_ws import PROTOCOLS, eventually, graphql_socket
from tests.e2e.live_support import Served, record, search, served_app, token, until_idle

RECORDED = "subscription { eventRecorded { id } }"
SOCKETS = 20
OPERATIONS = [str(n) for n in range(5)]


@pytest.fixture
def backend() -> str:
    """The fan-out is the same on either database: one is enough here."""
    return "sqlite"


@pytest.fixture
async def served(runtime: Runtime) -> AsyncIterator[Served]:
    async with served_app(runtime) as app:
        yield app


async def one_by_one(served: Served, tenant: Tenant, events: int) -> None:
    for _ in range(events):
        await record(served, tenant, search("q"))


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_dropped_client_leaves_nothing_behind_and_logs_no_error(
    served: Served,
    tenant: Tenant,
    runtime: Runtime,
    caplog: pytest.LogCaptureFixture,
    protocol: str,
) -> None:
    with caplog.at_level(logging.DEBUG):
        for _ in range(SOCKETS):
            async with graphql_socket(
                served.ws_url, protocol=protocol, payload=token(tenant)
            ) as socket:
                for operation in OPERATIONS:
                    await socket.subscribe(operation, RECORDED)
                await eventually(lambda: runtime.broker.subscriber_count == len(OPERATIONS))
                # A stream of results on their way: the client goes in the middle of it, with
                # no close frame and no complete.
                sending = asyncio.ensure_future(one_by_one(served, tenant, 20))
                await socket.next(OPERATIONS[0])
                socket.ws.transport.abort()
                await sending
            # Its five subscriptions left the broker with the connection (on graphql-ws they
            # stayed until a garbage collection, tens of seconds later).
            await until_idle(served)
    assert errors_logged(caplog) == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_client_gone_with_messages_unanswered_is_noticed_before_the_next_answer(
    served: Served, tenant: Tenant, caplog: pytest.LogCaptureFixture, protocol: str
) -> None:
    """Its messages arrived together, before it went: each answer was written to the lost
    connection, and asyncio warned of every one past the fifth ("socket.send() raised
    exception."), as the messages were read one after another without a turn of the loop that
    would have told the connection was gone (nor for any other client meanwhile)."""
    # Each answered: a pong, or (graphql-ws has no ping) an error naming the protocol's types.
    answered = json.dumps({"type": "ping"})
    with caplog.at_level(logging.DEBUG):
        for _ in range(5):
            async with graphql_socket(
                served.ws_url, protocol=protocol, payload=token(tenant)
            ) as socket:
                for _ in range(200):
                    await socket.ws.send(answered)
                socket.ws.transport.abort()
        await asyncio.sleep(0.5)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []


async def test_a_failure_of_an_operation_is_still_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Only a client's going away is quiet: any other failure of a running operation is an
    error, logged with its traceback as before."""
    handler = object.__new__(TransportWSHandler)  # the method uses nothing of the connection
    with caplog.at_level(logging.DEBUG):
        await handler.handle_task_exception(WebSocketDisconnected())
        await handler.handle_task_exception(ClosedMeanwhile("a close message has been sent"))
        assert errors_logged(caplog) == []
        await handler.handle_task_exception(RuntimeError("the fan-out broke"))
    [logged] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged.exc_info is not None
    assert "the fan-out broke" in str(logged.exc_info[1])
