"""Request bodies, bounded for every door: a size cap and a deadline, as the body streams in.

The middleware wraps ``receive``: a declared ``Content-Length`` over the cap is refused before a
byte is read, a body without one (chunked) when its running count passes the cap, so no more than
the cap plus one chunk is ever held. A body still arriving at the deadline is refused too, so a
client trickling one byte at a time cannot hold a worker. The errors are raised from ``receive``
into the door reading the body, which answers them in its own dialect (413 ``payload_too_large``,
408 ``timeout``); the middleware answers only for a door that lets one escape.
"""

from __future__ import annotations

import asyncio

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import PayloadTooLarge, SearchStatsError, Timeout


class BodyLimits:
    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_seconds: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _BoundedBody(receive, self.max_bytes, self.timeout_seconds, _declared_length(scope))
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, body.receive, tracking_send)
        except (PayloadTooLarge, Timeout) as error:
            if started:
                raise
            response = JSONResponse(
                {"error": {"code": error.code, "message": error.message}}, status_code=error.status
            )
            await response(scope, receive, send)


class _BoundedBody:
    def __init__(
        self, receive: Receive, max_bytes: int, timeout_seconds: float, declared: int | None
    ) -> None:
        self._receive = receive
        self._max = max_bytes
        self._timeout = timeout_seconds
        self._deadline = asyncio.get_running_loop().time() + timeout_seconds
        self._declared = declared
        self._read = 0
        self._complete = False

    async def receive(self) -> Message:
        if self._complete:
            return await self._receive()  # after the body: the disconnect, unchanged
        if self._declared is not None and self._declared > self._max:
            raise self._too_large()
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            raise Timeout(
                f"the request body did not arrive within {self._timeout:g} seconds"
            ) from None
        if message["type"] != "http.request":
            self._complete = True
            return message
        self._read += len(message.get("body", b""))
        if self._read > self._max:
            raise self._too_large()
        self._complete = not message.get("more_body", False)
        return message

    def _too_large(self) -> SearchStatsError:
        return PayloadTooLarge(f"the request body is over {self._max} bytes")


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
