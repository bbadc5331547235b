"""Request bodies, bounded for every door: a size cap and a deadline, as the body streams in.

The middleware wraps ``receive``: a declared ``Content-Length`` over the cap is refused before a
byte is read, a body without one (chunked) when its running count passes the cap, so no more than
the cap plus one chunk is ever held. A body still arriving at the deadline is refused too, so a
client trickling one byte at a time cannot hold a worker. The errors are raised from ``receive``
into the door reading the body, which answers them in its own dialect (413 ``payload_too_large``,
408 ``timeout``); the middleware answers only for a door that lets one escape.

The deadline is kept by one sweeper for all requests, not by a timer per ``receive``: nearly
every body has arrived whole before the door reads it, so its ``receive`` returns without
waiting, and a timer armed and disarmed around it would be pure cost (measured: the timeout
context and its task lookup were 7% of a REST visit's CPU). Only a ``receive`` that actually waits
is seen by the sweeper, which looks every ``SWEEP_SECONDS``: a body is refused at most that much
after its deadline.
"""

from __future__ import annotations

import asyncio
import time

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import PayloadTooLarge, SearchStatsError, Timeout
from app.event_loop import current_task

SWEEP_SECONDS = 0.25


class BodyLimits:
    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_seconds: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds
        self.deadlines = _Deadlines()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _BoundedBody(
            receive, self.max_bytes, self.timeout_seconds, declared_length(scope), self.deadlines
        )
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


class _Deadlines:
    """The bodies whose ``receive`` is waiting, each cancelled once past its deadline."""

    def __init__(self) -> None:
        self._waiting: set[_BoundedBody] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def watch(self, body: _BoundedBody) -> None:
        self._waiting.add(body)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="body-deadlines")

    def unwatch(self, body: _BoundedBody) -> None:
        self._waiting.discard(body)

    async def _sweep(self) -> None:
        # Runs while some body is waiting, so an idle worker (or a test's loop) keeps no task.
        try:
            while self._waiting:
                await asyncio.sleep(SWEEP_SECONDS)
                now = time.monotonic()
                for body in [body for body in self._waiting if body.deadline <= now]:
                    self._waiting.discard(body)
                    body.expire()
        finally:
            self._sweeper = None


class _BoundedBody:
    def __init__(
        self,
        receive: Receive,
        max_bytes: int,
        timeout_seconds: float,
        declared: int | None,
        deadlines: _Deadlines,
    ) -> None:
        self._receive = receive
        self._max = max_bytes
        self._timeout = timeout_seconds
        self.deadline = time.monotonic() + timeout_seconds
        self._declared = declared
        self._deadlines = deadlines
        self._reader: asyncio.Task[object] | None = None
        self._expired = False
        self._read = 0
        self._complete = False

    def expire(self) -> None:
        """Past the deadline: the waiting ``receive`` raises ``Timeout``."""
        if self._reader is not None:
            self._expired = True
            self._reader.cancel()

    async def receive(self) -> Message:
        if self._complete:
            return await self._receive()  # after the body: the disconnect, unchanged
        if self._declared is not None and self._declared > self._max:
            raise self._too_large()
        message = await self._within_deadline()
        if message["type"] != "http.request":
            self._complete = True
            return message
        self._read += len(message.get("body", b""))
        if self._read > self._max:
            raise self._too_large()
        self._complete = not message.get("more_body", False)
        return message

    async def _within_deadline(self) -> Message:
        if time.monotonic() >= self.deadline:
            raise self._timed_out()
        self._reader = self._reader or current_task()
        waiting = self._receive()
        self._deadlines.watch(self)
        try:
            return await waiting
        except asyncio.CancelledError:
            # Ours only if the sweeper cancelled it and nobody else asked for a cancellation.
            if self._expired and self._reader is not None and self._reader.uncancel() == 0:
                raise self._timed_out() from None
            raise
        finally:
            self._deadlines.unwatch(self)

    def _timed_out(self) -> SearchStatsError:
        return Timeout(f"the request body did not arrive within {self._timeout:g} seconds")

    def _too_large(self) -> SearchStatsError:
        return PayloadTooLarge(f"the request body is over {self._max} bytes")


def declared_length(scope: Scope) -> int | None:
    """The ``Content-Length`` sent, None for none or one that is not ASCII digits; past 18
    digits, over any cap."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            if not value.isdigit():
                return None
            # Past 18 digits, over any cap: int() refuses a string of more than 4,300.
            digits = value.lstrip(b"0")
            return int(digits or b"0") if len(digits) <= 18 else 10**18
    return None
