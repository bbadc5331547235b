"""The fan-out benchmark's subscribers: a process of their own, each a websocket read in callbacks.

A thousand subscribers share the machine (and its two cores) with the server they measure and
with the client driving the ingest. On the ingest client's own event loop, each answer's
thousand messages held it (no request sent, none acknowledged) for as long as they took to read,
so the ingest slowed for the benchmark's sake, not the server's. They now run in a process of
their own, which the ingest client drives through a pipe; arrival times are read on the same
clock as the acknowledgements (``time.monotonic``, system-wide), on uvloop as the server's are.

Each connection is an ``asyncio.Protocol`` (``websockets``' asyncio client cost a frame parser, a
message queue and a task woken per message): the frames of a read are cut out of its buffer as
they come, and every message is still parsed whole and checked. Only what the benchmark needs is
spoken: graphql-transport-ws over the handshake, unfragmented frames without extensions (as the
server sends them), pings answered, and a clean close.
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from typing import cast
from urllib.parse import urlsplit

import orjson
import uvloop
from websockets.utils import apply_mask

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
NORMAL_CLOSURE = struct.pack("!H", 1000)
OPEN_PER_BATCH = 50  # websocket handshakes in flight at once


@dataclass
class Received:
    """What one subscriber received, as the ingest client's process is told."""

    seen: list[tuple[float, int]]  # (arrival, visits so far), one per liveStats message
    ended: str | None  # why it ended, unless the benchmark closed it

    @property
    def last(self) -> int:
        return self.seen[-1][1] if self.seen else -1


class Subscriber(asyncio.Protocol):
    """One connection, one liveStats subscription: the arrival time and count of each answer."""

    def __init__(self, subscribe: bytes, connection_init: bytes, handshake: bytes) -> None:
        self.seen: list[tuple[float, int]] = []  # (arrival, visits so far)
        self.ended: str | None = None  # why it ended, unless the benchmark closed it
        self._subscribe = subscribe
        self._connection_init = connection_init
        self._handshake = handshake
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._upgraded = False
        self._closing = False
        self.acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._transport.write(self._handshake)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._upgraded:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self._buffer[: self._buffer.find(b"\r\n")])
            if not status.startswith(b"HTTP/1.1 101"):
                self._end(f"upgrade refused: {status.decode(errors='replace')}")
                return
            del self._buffer[: end + 4]
            self._upgraded = True
            self._write(TEXT, self._connection_init)
        # The clock of the ingest client's acknowledgements (uvloop's loop.time() is another).
        self._read_frames(time.monotonic())

    def _read_frames(self, arrival: float) -> None:
        buffer, start = self._buffer, 0
        while len(buffer) - start >= 2:
            first, length = buffer[start], buffer[start + 1]
            if first & 0x70 or not first & 0x80 or length & 0x80:
                self._end("unexpected frame (with extensions, fragmented or masked)")
                return
            header = 2
            if length == 126:
                header, length = 4, int.from_bytes(buffer[start + 2 : start + 4])
            elif length == 127:
                header, length = 10, int.from_bytes(buffer[start + 2 : start + 10])
            if len(buffer) - start < header + length:
                break
            payload = bytes(buffer[start + header : start + header + length])
            start += header + length
            opcode = first & 0x0F
            if opcode == TEXT:
                self._message(payload, arrival)
            elif opcode == PING:
                self._write(PONG, payload)
            elif opcode == CLOSE:
                self._on_close(payload)
                return
        del buffer[:start]

    def _message(self, raw: bytes, arrival: float) -> None:
        message = orjson.loads(raw)
        kind = message["type"]
        if kind == "next" and "errors" not in message["payload"]:
            visits = message["payload"]["data"]["liveStats"]["visits"]["totalCount"]
            self.seen.append((arrival, visits))
        elif kind == "connection_ack":
            self._write(TEXT, self._subscribe)
            if not self.acknowledged.done():
                self.acknowledged.set_result(None)
        elif kind == "ping":
            self._write(TEXT, b'{"type":"pong"}')
        else:  # an error, a completion, or a next with errors ends the subscription
            self._end(orjson.dumps(message.get("payload")).decode()[:200])

    def close(self) -> None:
        """End the connection as a client does: a close frame, then the server closes."""
        if self._transport is not None and not self._closing and not self.closed.done():
            self._closing = True
            self._write(CLOSE, NORMAL_CLOSURE)

    def _on_close(self, payload: bytes) -> None:
        if not self._closing:
            code = int.from_bytes(payload[:2]) if len(payload) >= 2 else 1005
            self._end(f"closed by the server ({code})")
        if self._transport is not None:
            self._transport.close()

    def _end(self, why: str) -> None:
        if self.ended is None and not self._closing:
            self.ended = why
        if not self.acknowledged.done():
            self.acknowledged.set_exception(ConnectionError(why))
        if self._transport is not None and not self._closing:
            self._closing = True
            self._write(CLOSE, NORMAL_CLOSURE)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closing:
            self._end(f"connection lost: {exc}")
        if not self.acknowledged.done():
            self.acknowledged.set_exception(ConnectionError(self.ended or "connection lost"))
        if not self.closed.done():
            self.closed.set_result(None)

    def _write(self, opcode: int, payload: bytes) -> None:
        """A client's frame: always masked, its length always under 64 KiB here."""
        assert self._transport is not None
        assert len(payload) < 65536
        mask = os.urandom(4)
        if len(payload) < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload))
        else:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, len(payload))
        self._transport.write(header + mask + apply_mask(payload, mask))


async def subscribe(
    url: str, credential: str, operation_id: str, query: str, variables: dict[str, object]
) -> Subscriber:
    """A connected subscriber whose connection is acknowledged and subscription sent."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    handshake = (
        f"GET {parts.path or '/'} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: graphql-transport-ws\r\n"
        "\r\n"
    ).encode()
    connection_init = orjson.dumps(
        {"type": "connection_init", "payload": {"Authorization": credential}}
    )
    subscription = orjson.dumps(
        {
            "id": operation_id,
            "type": "subscribe",
            "payload": {"query": query, "variables": variables},
        }
    )
    loop = asyncio.get_running_loop()
    _transport, subscriber = await loop.create_connection(
        lambda: Subscriber(subscription, connection_init, handshake), host, port
    )
    await asyncio.wait_for(asyncio.shield(subscriber.acknowledged), 30)
    return subscriber


@dataclass(frozen=True)
class _Question:
    """What every subscriber of the process asks, and where (sent to the process whole)."""

    url: str
    credential: str
    query: str
    variables: dict[str, object]


class SubscriberProcess:
    """``count`` subscribers of one liveStats question, connected and read in another process."""

    def __init__(
        self, url: str, credential: str, count: int, query: str, variables: dict[str, object]
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(
            target=_run,
            args=(child, _Question(url, credential, query, variables), count),
            daemon=True,
        )
        self._process.start()
        child.close()

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    async def connected(self) -> list[Received]:
        """Once every subscriber has its first answer (or has ended): what each received."""
        return await self._reply()

    async def delivered(self, expected: int) -> list[Received]:
        """Once every subscriber has counted ``expected`` visits (or ended, or 10 s passed)."""
        self._pipe.send(("delivered", expected))
        return await self._reply()

    async def close(self) -> list[Received]:
        """Every connection closed by its client; what each received in all."""
        self._pipe.send(("close", 0))
        try:
            return await self._reply()
        finally:
            await asyncio.to_thread(self._process.join, 10)
            if self._process.is_alive():
                self._process.kill()

    async def _reply(self) -> list[Received]:
        reply: list[Received] | BaseException = await asyncio.to_thread(self._pipe.recv)
        if isinstance(reply, BaseException):
            raise RuntimeError("the subscribers' process failed") from reply
        return reply


def _run(pipe: Connection, question: _Question, count: int) -> None:
    try:
        # uvloop, as the server runs: its reads cost the benchmark a third less than asyncio's.
        uvloop.run(_serve(pipe, question, count))
    except Exception as error:
        pipe.send(error)


async def _serve(pipe: Connection, question: _Question, count: int) -> None:
    q = question
    subscribers: list[Subscriber] = []
    for first in range(0, count, OPEN_PER_BATCH):
        batch = range(first, min(first + OPEN_PER_BATCH, count))
        subscribers += await asyncio.gather(
            *(subscribe(q.url, q.credential, str(i), q.query, q.variables) for i in batch)
        )
    await until(lambda: all(s.seen or s.ended for s in subscribers), 60)
    pipe.send(_received(subscribers))
    while True:
        command, expected = await asyncio.to_thread(pipe.recv)
        if command == "close":
            for subscriber in subscribers:
                subscriber.close()
            await asyncio.wait([s.closed for s in subscribers], timeout=30)
            pipe.send(_received(subscribers))
            return
        await until(partial(_delivered, subscribers, expected), 10)
        pipe.send(_received(subscribers))


def _delivered(subscribers: list[Subscriber], expected: int) -> bool:
    return all(s.ended or (s.seen and s.seen[-1][1] >= expected) for s in subscribers)


def _received(subscribers: list[Subscriber]) -> list[Received]:
    return [Received(list(s.seen), s.ended) for s in subscribers]


async def until(condition: Callable[[], object], within: float) -> None:
    """Return once ``condition()`` holds, or after ``within`` seconds."""
    for _ in range(int(within / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
