"""The two websocket protocols' handlers: Strawberry's, with the gaps they leave filled.

- A connection refused for another reason than its credential (storage down, too many failed
  credentials from its address, an unexpected error) is closed in the contract's words: 1013
  (Try Again Later) when the error says to retry, else 1011, with the error's code as the reason
  (graphql-ws: a ``connection_error`` with that code first). A bad credential stays Strawberry's
  4403 (graphql-ws: ``connection_error``), which clients take as "fix the key".
- A malformed message is answered (graphql-transport-ws closes with 4400, as for its other
  invalid messages; graphql-ws sends an ``error``) instead of escaping as an exception that
  drops the socket without a close frame.
- Past the operations allowed at once on a connection, the refusal has a code:
  ``too_many_requests``.
- graphql-ws refuses a connection_init payload that is not an object as graphql-transport-ws does
  (4400), with a ``connection_error`` saying so (Strawberry's has no payload, and closes 1000).
- graphql-ws gets the connection_init timeout graphql-transport-ws has (4408), and one
  connection_init per connection, as graphql-transport-ws allows (4429): its account never
  changes, and it runs one keep-alive.
- Each operation's task may be written to by the live fan-out (graphql_schema/fanout.py).
- A client gone without a word while a result was on its way to it (a tab closed, a phone off its
  network) is logged at debug level, not as Strawberry's error with a traceback: it is no fault
  of the service's, and a busy dashboard's clients come and go all day. On graphql-ws, its
  operations then end with the connection, quietly, their subscriptions closed at once (a send
  that raised, a result's or the ``complete`` of an operation ended by the close, left the
  operation's memory, its subscription included, to the garbage collector).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from graphql import GraphQLError, GraphQLFormattedError
from starlette.websockets import WebSocketDisconnected as ConnectionClosedBefore
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    ErrorMessage,
    Message,
    SubscribeMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage as LegacyInitMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import OperationMessage, StartMessage

from app.errors import BadParams, SearchStatsError, TooManyRequests, retry_after
from graphql_schema.context import Context
from graphql_schema.fanout import follow

log = logging.getLogger("searchstats.graphql")

# A send to a connection that is gone: the client went (Strawberry's), or the connection was
# closed meanwhile, as the client's going is noticed (Starlette's).
CONNECTION_GONE = (WebSocketDisconnected, ConnectionClosedBefore)

INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
BAD_INIT, BAD_INIT_REASON = 4400, "Invalid connection init payload"  # graphql-transport-ws's
BAD_INIT_MESSAGE = 'the connection_init payload is an object: {"Authorization": "Token <api key>"}'
# What a graphql-ws client sends.
LEGACY_CLIENT_MESSAGES = ("connection_init", "start", "stop", "connection_terminate")
INIT_TIMEOUT, INIT_TIMEOUT_REASON = 4408, "Connection initialisation timeout"
SECOND_INIT, SECOND_INIT_REASON = 4429, "Too many initialisation requests"


def _close_code(refusal: SearchStatsError) -> int:
    """The close code of a connection refused for another reason than its credential."""
    return TRY_AGAIN_LATER if retry_after(refusal) is not None else INTERNAL_ERROR


def _message_problem(message: object, *, start: str, stop: str) -> str | None:
    """What makes a message unusable (the protocol's names of its operation messages), or None."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "a message is a JSON object with a type"
    kind = message["type"]
    if kind in (start, stop) and not isinstance(message.get("id"), str):
        return f"a {kind} message needs an id (a string)"
    if kind != start:
        return None
    payload = message.get("payload")
    if not isinstance(payload, dict):
        return f"a {kind} message needs a payload (an object)"
    if not isinstance(payload.get("query"), str):
        return "the payload needs a query (a string)"
    if not isinstance(payload.get("variables", {}), dict | None):
        return "the payload's variables must be an object"
    if not isinstance(payload.get("operationName"), str | None):
        return "the payload's operationName must be a string"
    return None


def _operation_limit(limit: int | None, running: int) -> GraphQLFormattedError | None:
    """The refusal of one more operation on a connection already running ``running``."""
    if limit is None or running < limit:
        return None
    message = f"Subscription limit reached: at most {limit} operations at once on a connection"
    return GraphQLError(message, extensions={"code": TooManyRequests.code}).formatted


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws."""

    async def handle_task_exception(self, error: Exception) -> None:
        if isinstance(error, CONNECTION_GONE):
            log.debug("a websocket client went away while a result was sent to it")
            return
        await super().handle_task_exception(error)

    async def handle_message(self, message: Message) -> None:
        problem = _message_problem(message, start="subscribe", stop="complete")
        if problem is None:
            await super().handle_message(message)
        else:
            await self.handle_invalid_message(problem)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if message.get("payload", {}) is None:
            # The protocol allows it: the credential then comes from the upgrade request.
            message = ConnectionInitMessage(type="connection_init", payload={})
        try:
            await super().handle_connection_init(message)
        except SearchStatsError as refusal:  # on_ws_connect's, for another reason than the key
            await self.websocket.close(code=_close_code(refusal), reason=refusal.code)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        # Strawberry checks in this order: acknowledged (4401), id in use (4409), then the limit.
        if self.connection_acknowledged and message["id"] not in self.operations:
            refusal = _operation_limit(self.max_subscriptions_per_connection, len(self.operations))
            if refusal is not None:
                error: ErrorMessage = {"id": message["id"], "type": "error", "payload": [refusal]}
                await self.send_message(error)
                return
        await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        def current() -> bool:  # not completed by either side
            return self.operations.get(operation.id) is operation and not operation.completed

        follow(self.websocket, operation.id, "next", current)
        await super().run_operation(operation)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """The legacy graphql-ws (Apollo's subscriptions-transport-ws)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_received = False
        self._init_timer: asyncio.Task[None] | None = None
        self._timed_out = False

    async def handle(self) -> None:
        self._init_timer = asyncio.create_task(self._close_without_init())
        try:
            await super().handle()
        finally:
            self._init_timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._init_timer

    async def _close_without_init(self) -> None:
        """Cancelled by the connection_init, or by the end of the connection."""
        await asyncio.sleep(self.view.connection_init_wait_timeout.total_seconds())
        self._timed_out = True
        await self.websocket.close(code=INIT_TIMEOUT, reason=INIT_TIMEOUT_REASON)

    async def handle_message(self, message: OperationMessage) -> None:
        problem = _message_problem(message, start="start", stop="stop")
        if problem is None and message["type"] not in LEGACY_CLIENT_MESSAGES:
            # Strawberry ignores it: a client speaking graphql-transport-ws's words here
            # ("subscribe") waited for ever.
            known = ", ".join(LEGACY_CLIENT_MESSAGES)
            problem = f"unknown message type {message['type'][:40]!r} (graphql-ws has {known})"
        if problem is None:
            await super().handle_message(message)
        else:
            operation_id = message.get("id") if isinstance(message, dict) else None
            await self._send_error(operation_id if isinstance(operation_id, str) else None, problem)

    async def handle_connection_init(self, message: LegacyInitMessage) -> None:
        if self._timed_out:
            return  # read just before the timeout closed the connection
        if self._init_received:
            await self.websocket.close(code=SECOND_INIT, reason=SECOND_INIT_REASON)
            return
        self._init_received = True
        if self._init_timer is not None:
            self._init_timer.cancel()
        if not isinstance(message.get("payload", {}), dict | None):
            # Strawberry's refusal says nothing (a connection_error without payload, closed 1000).
            await self._refuse(BadParams(BAD_INIT_MESSAGE), BAD_INIT, BAD_INIT_REASON)
            return
        try:
            await super().handle_connection_init(message)
        except SearchStatsError as refusal:  # on_ws_connect's, for another reason than the key
            await self._refuse(refusal, _close_code(refusal), refusal.code)

    async def _refuse(self, refusal: SearchStatsError, code: int, reason: str) -> None:
        payload: dict[str, object] = {"code": refusal.code, "message": refusal.message}
        await self.send_message({"type": "connection_error", "payload": payload})
        await self.websocket.close(code=code, reason=reason)

    async def handle_start(self, message: StartMessage) -> None:
        # Strawberry closes a start before the connection's ack (4401); a known id replaces its
        # operation.
        if self.connection_acknowledged and message["id"] not in self.tasks:
            refusal = _operation_limit(self.max_subscriptions_per_connection, len(self.tasks))
            if refusal is not None:
                await self.send_message({"type": "error", "id": message["id"], "payload": refusal})
                return
        await super().handle_start(message)

    async def send_message(self, message: OperationMessage) -> None:
        """A send to a client that is gone is dropped: the operation goes on until the
        connection's end is read, whose cleanup stops it and closes its subscription. Raised, it
        ended the operation's task with the subscription's generator open (Strawberry closes it
        on a stop or at the connection's end, and the task had left both), and so its feed stayed
        on the broker until the next garbage collection: tens of seconds, receiving every event.
        The ``complete`` of an operation the close ended comes here too: raised, its error
        outlived the connection with the operation's frames (a liveStats feed, its watcher and
        its last report).
        """
        try:
            await super().send_message(message)
        except CONNECTION_GONE:
            log.debug("a websocket client went away while a message was sent to it")

    async def _send_error(self, operation_id: str | None, message: str) -> None:
        payload = GraphQLError(message, extensions={"code": BadParams.code}).formatted
        frame = {"type": "error", "payload": payload}
        if operation_id is not None:
            frame["id"] = operation_id
        await self.websocket.send_json(frame)

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        task = asyncio.current_task()

        def current() -> bool:  # not stopped, nor replaced by another of the same id
            return self.tasks.get(operation_id) is task

        follow(self.websocket, operation_id, "data", current)
        await super().handle_async_results(operation_id, query, operation_name, variables)
