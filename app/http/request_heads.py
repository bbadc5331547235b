"""Request heads bounded in size and in time, at the HTTP server itself.

uvicorn's httptools protocol takes a request head (request line and headers) of any size and
waits for it as long as the client likes: three connections each sending an unfinished 100 MB
header held 300 MB of the worker, and one sending a header line every 5 s was never closed. The
application cannot help: it is called once the head is complete. So ``searchstats serve`` runs
this protocol instead: a head over ``MAX_HEAD_BYTES`` is answered 431 and its connection closed;
a head still arriving ``SEARCHSTATS_BODY_TIMEOUT_SECONDS`` after its first byte (after the
connection opened, for its first request) is answered 408 and closed, and a connection that sent
nothing in that time is closed. Between requests, uvicorn's keep-alive timeout applies as before.

Added to each chunk received: a check of the request's scope and two attribute reads; each
connection has one timer, armed again each timeout while it lives, none per request.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.settings import Settings

_parse = HttpToolsProtocol.data_received  # called directly: cheaper than through super()
# nginx's default is 4 buffers of 8 KiB for a head; JWTs and cookies fit in either many times over.
MAX_HEAD_BYTES = 64 * 1024
# After a refusal, how long what the client still sends is read and dropped before the
# connection is closed: closed at once with unread bytes, it is reset, and the client, still
# sending, may never read the answer.
LINGER_SECONDS = 2.0


@functools.cache
def head_timeout_seconds() -> float:
    """The body's deadline, read from the environment as the worker's application reads it."""
    return Settings().body_timeout_seconds


class BoundedHeadsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timeout = head_timeout_seconds()
        # When the head being waited for began: the connection, for its first request, else the
        # chunk that brought its first byte; None while no head is awaited.
        self._head_started: float | None = None
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_started = self.loop.time()
        self._head_timer = self.loop.call_later(self._head_timeout, self._watch_head)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _head_arriving(self) -> bool:
        """Part of a head has arrived, not all of it: the parser began a request (uvicorn makes
        its scope), and has not reached the end of its headers (where the method is set)."""
        scope = self.scope
        return scope is not None and "method" not in scope

    def data_received(self, data: bytes) -> None:
        # Only this is added to each chunk's parsing, inlined: uvicorn's per-request callbacks
        # are left alone, what they did tells whether a head is incomplete.
        if self._refused:
            return
        _parse(self, data)
        scope = self.scope
        if scope is None:  # nothing of a request yet (blank lines): still waiting for one
            return
        if "method" in scope:  # its head has arrived (see _head_arriving)
            if self._head_started is not None:
                self._head_started, self._head_bytes = None, 0
            return
        if self.transport.is_closing():  # refused by uvicorn's parser
            return
        if self._head_started is None:
            self._head_started = self.loop.time()
        self._head_bytes += len(data)  # the head is incomplete: the chunk is (nearly all) head
        if self._head_bytes > MAX_HEAD_BYTES:
            message = f"the request head is over {MAX_HEAD_BYTES} bytes"
            self._refuse(431, b"Request Header Fields Too Large", "bad_params", message)

    def _watch_head(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing() or self not in self.connections:
            return  # refused, closed, or upgraded to a websocket (which has its own protocol)
        now = self.loop.time()
        started = self._head_started
        if started is not None and now - started >= self._head_timeout:
            if self._head_arriving():
                message = f"the request head did not arrive within {self._head_timeout:g} s"
                self._refuse(408, b"Request Timeout", "timeout", message)
            else:
                self.transport.close()  # a connection that never asked anything
            return
        wait = self._head_timeout if started is None else started + self._head_timeout - now
        self._head_timer = self.loop.call_later(wait, self._watch_head)

    def _refuse(self, status: int, reason: bytes, code: str, message: str) -> None:
        body = orjson.dumps({"error": {"code": code, "message": message}})
        head = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        headers = b"content-type: application/json\r\nconnection: close\r\n"
        length = b"content-length: %d\r\n\r\n" % len(body)
        self.transport.write(head + headers + length + body)
        self._refused = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
