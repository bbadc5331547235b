"""liveStats answers written straight to the websockets: one encoding per answer, a frame each.

Strawberry sends a subscription's results from the operation's own task: per subscriber and
answer, a wake-up, a GraphQL execution (shared, but still looked up), its extension hooks and a
JSON encoding. For a liveStats subscription over one of our websocket handlers, the feed instead
hands each answer to a ``LiveSink``: the answer's payload is encoded once per document and
variables, and each subscriber's frame is that text with its own operation id around it, written
without waiting. Whatever cannot go that way (a result with errors) is declined, and then sent by
Strawberry as before; errors, completion and expiry always are.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from types import CoroutineType
from typing import Any

from starlette.websockets import WebSocket, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.async_base_view import AsyncWebSocketAdapter

from app.services.live import Sent
from app.services.stats import StatsReport

# The operation whose task is running (set by ``follow``, for that task only).
_OPERATION: ContextVar[_Socket | None] = ContextVar("live_operation", default=None)


def follow(
    adapter: AsyncWebSocketAdapter, operation_id: str, kind: str, current: Callable[[], bool]
) -> None:
    """Let the running task's operation be written to directly (graphql_schema/websocket.py's
    handlers call it in each operation's task): frames of type ``kind`` with its id, while
    ``current()`` says the operation is still on."""
    _OPERATION.set(_Socket.of(adapter, operation_id, kind, current))


def current_socket() -> _Socket | None:
    """The websocket operation of the running task, when it can be written to directly."""
    return _OPERATION.get()


class _Socket:
    """One operation's way out: frames of the protocol's data type, with its id."""

    def __init__(self, websocket: WebSocket, head: str, current: Callable[[], bool]) -> None:
        self._websocket = websocket
        self._send = websocket._send
        self._head = head
        self._current = current
        self._gone = False
        self._writing: asyncio.Task[None] | None = None

    @classmethod
    def of(
        cls,
        adapter: AsyncWebSocketAdapter,
        operation_id: str,
        kind: str,
        current: Callable[[], bool],
    ) -> _Socket | None:
        if not isinstance(adapter, ASGIWebSocketAdapter):
            return None
        head = f'{{"id":{json.dumps(operation_id)},"type":"{kind}","payload":'
        return cls(adapter.ws, head, current)

    def write(self, payload: str, written: Callable[[], None]) -> Sent:
        """Send ``payload`` (the message's encoded payload) now, or start sending it."""
        if self._gone or not self._current():
            return Sent.SENT  # the operation is over: its handler says so to the client
        if self._websocket.application_state is not WebSocketState.CONNECTED:
            return Sent.SENT  # closing: its handler ends the operations
        # The ASGI send (the middlewares' and the server's, below Starlette's WebSocket, whose
        # checks are the line above) is a coroutine that normally finishes without waiting: run
        # it here, and only when it must wait (the client reads slower than we write) in a task.
        sending = self._send({"type": "websocket.send", "text": self._head + payload + "}"})
        if isinstance(sending, CoroutineType):
            try:
                waiting = sending.send(None)
            except StopIteration:
                return Sent.SENT
            except Exception:  # the connection is gone: its reader ends the operations
                self._gone = True
                return Sent.SENT
            sending = _finish(sending, waiting)
        self._writing = asyncio.ensure_future(sending)
        self._writing.add_done_callback(lambda task: self._done(task, written))
        return Sent.WRITING

    def _done(self, task: asyncio.Task[None], written: Callable[[], None]) -> None:
        self._writing = None
        if task.cancelled() or task.exception() is not None:
            self._gone = True
        written()


async def _finish(sending: Coroutine[Any, Any, None], waiting: object) -> None:
    """Go on with a coroutine that was started elsewhere and is waiting on ``waiting``."""
    try:
        while True:
            if isinstance(waiting, asyncio.Future):
                await asyncio.wait([waiting])
            else:
                await asyncio.sleep(0)  # a bare yield: give the loop one turn
            waiting = sending.send(None)
    except StopIteration:
        return
    finally:
        sending.close()


class LiveSink:
    """Sends a liveStats subscription's answers through its websocket, encoded once for all."""

    def __init__(self, socket: _Socket, encode: Callable[[StatsReport], str | None]) -> None:
        self._socket = socket
        self._encode = encode

    def send(self, report: StatsReport, written: Callable[[], None]) -> Sent:
        payload = self._encode(report)
        if payload is None:
            return Sent.DECLINED
        return self._socket.write(payload, written)
