"""A small GraphQL-over-websocket test client on ``websockets``, for both subprotocols."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
PROTOCOLS = (TRANSPORT_WS, LEGACY_WS)


class OperationError(Exception):
    """The server ended an operation with errors."""

    def __init__(self, errors: Any) -> None:
        super().__init__(errors)
        self.errors = errors if isinstance(errors, list) else [errors]

    @property
    def code(self) -> str | None:
        extensions = self.errors[0].get("extensions") or {}
        code: str | None = extensions.get("code")
        return code


class GraphQLSocket:
    """One connection; operations are told apart by id, messages buffered per id."""

    def __init__(self, ws: ClientConnection, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self._inbox: dict[str, asyncio.Queue[dict[str, Any]]] = {}

    async def subscribe(self, op_id: str, query: str, **variables: Any) -> None:
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": variables}
        await self.ws.send(json.dumps({"id": op_id, "type": kind, "payload": payload}))

    async def complete(self, op_id: str) -> None:
        kind = "complete" if self.protocol == TRANSPORT_WS else "stop"
        await self.ws.send(json.dumps({"id": op_id, "type": kind}))

    async def next(self, op_id: str, within: float = 10) -> dict[str, Any]:
        """The operation's next result's data; OperationError when it ended with errors."""
        message = await self.message(op_id, within)
        payload: Any = message.get("payload")
        if message["type"] == "error":  # graphql-transport-ws: a list; graphql-ws: an object
            raise OperationError(payload)
        if isinstance(payload, dict) and payload.get("errors"):
            raise OperationError(payload["errors"])
        if message["type"] == "complete":
            raise OperationError([{"message": "completed"}])
        data: dict[str, Any] = payload["data"]
        return data

    async def message(self, op_id: str, within: float = 10) -> dict[str, Any]:
        queue = self._inbox.setdefault(op_id, asyncio.Queue())
        async with asyncio.timeout(within):
            while queue.empty():
                await self._receive_one()
        return queue.get_nowait()

    async def pending(self, op_id: str, wait: float) -> list[dict[str, Any]]:
        """Every message the operation receives within ``wait`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        received: list[dict[str, Any]] = []
        while (left := deadline - loop.time()) > 0:
            try:
                received.append(await self.message(op_id, left))
            except TimeoutError:
                break
        return received

    async def _receive_one(self) -> None:
        message = json.loads(await self.ws.recv())
        if message.get("type") == "ping":
            await self.ws.send(json.dumps({"type": "pong"}))
        elif "id" in message:
            self._inbox.setdefault(message["id"], asyncio.Queue()).put_nowait(message)


@asynccontextmanager
async def graphql_socket(
    url: str,
    *,
    protocol: str = TRANSPORT_WS,
    payload: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[GraphQLSocket]:
    """Connect and complete the connection_init handshake (ConnectionRefused if refused)."""
    async with connect(
        url,
        subprotocols=[Subprotocol(protocol)],
        additional_headers=dict(headers or {}),
        proxy=None,
        open_timeout=10,
        compression=None,
    ) as ws:
        init: dict[str, Any] = {"type": "connection_init", "payload": dict(payload or {})}
        await ws.send(json.dumps(init))
        while True:
            async with asyncio.timeout(10):
                reply = json.loads(await ws.recv())
            if reply["type"] == "connection_ack":
                break
            if reply["type"] == "connection_error":
                raise ConnectionRefused(reply.get("payload"))
        yield GraphQLSocket(ws, protocol)


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until the condition holds (polling: what it watches has no event to await)."""
    step = 0.005
    for _ in range(int(within / step)):
        if condition():
            return
        await asyncio.sleep(step)
    assert condition(), f"still false after {within} s"


class ConnectionRefused(Exception):
    """The legacy protocol's connection_error."""

    def __init__(self, payload: Any) -> None:
        super().__init__(payload)
        self.payload = payload
