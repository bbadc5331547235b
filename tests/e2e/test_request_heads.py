"""``searchstats serve`` bounds a request's head in size and in time (app.http.request_heads),
over real sockets: a head too large is 431, one trickling past the deadline 408, a connection
that asks nothing is closed; ordinary requests, keep-alive and websockets are untouched."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from app.http.request_heads import MAX_HEAD_BYTES
from tests.e2e.servers import ServeProcess, searchstats_serve

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

DEADLINE = 1.0
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: searchstats\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir: Path = tmp_path_factory.mktemp("request-heads")
    env = {
        "SEARCHSTATS_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'serve.db'}",
        "SEARCHSTATS_SECRET_KEY": "heads-secret",
        "SEARCHSTATS_BODY_TIMEOUT_SECONDS": str(DEADLINE),
    }
    with searchstats_serve(env, workdir, name="heads") as served:
        yield served


@pytest.fixture
async def connection(
    server: ServeProcess,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers, body (read to its length)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status_line, *lines = head.decode().split("\r\n")[:-2]
    headers = dict(line.lower().split(": ", 1) for line in lines)
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """What the server sent until it closed the connection."""
    return await asyncio.wait_for(reader.read(), 10)


async def test_a_head_over_the_bound_is_431_and_the_connection_closed(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    reader, writer = connection
    writer.write(REQUEST + b"X-Padding: ")
    for _ in range(4 * MAX_HEAD_BYTES // 4096):  # never finished: 256 KiB and counting
        writer.write(b"x" * 4096)
        await writer.drain()
    status, headers, body = await answer(reader)
    assert (status, headers["connection"]) == (431, "close")
    assert json.loads(body) == {
        "error": {
            "code": "bad_params",
            "message": f"the request head is over {MAX_HEAD_BYTES} bytes",
        }
    }
    assert await closed_by_server(reader) == b""


async def test_a_head_within_the_bound_is_served(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    reader, writer = connection
    padding = b"X-Padding: " + b"x" * (MAX_HEAD_BYTES - 1024) + b"\r\n"
    for _ in range(2):  # and again on the same connection
        writer.write(REQUEST + padding + b"\r\n")
        assert (await answer(reader))[0] == 200


async def test_a_head_trickling_past_the_deadline_is_408_and_closed(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    reader, writer = connection
    writer.write(REQUEST)
    await answer_in_time(reader, writer)  # a first request, answered, keeps the connection
    started = time.monotonic()
    writer.write(REQUEST)

    async def trickle() -> None:
        for n in range(100):
            await asyncio.sleep(0.2)
            writer.write(b"X-Line-%d: x\r\n" % n)

    trickling = asyncio.create_task(trickle())
    try:
        status, headers, body = await answer(reader)
    finally:
        trickling.cancel()
    assert (status, headers["connection"]) == (408, "close")
    assert json.loads(body)["error"]["code"] == "timeout"
    # The server times the head from its first bytes, on its loop's clock, whose timers may
    # fire a clock tick early: a margin below, as the other deadline tests here allow.
    assert DEADLINE - 0.1 <= time.monotonic() - started < DEADLINE + 2
    assert await closed_by_server(reader) == b""


async def answer_in_time(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"\r\n")
    assert (await answer(reader))[0] == 200


async def test_a_connection_that_asks_nothing_is_closed_without_an_answer(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    reader, _writer = connection
    started = time.monotonic()  # a moment after the server's clock for it started
    assert await closed_by_server(reader) == b""
    assert DEADLINE - 0.1 <= time.monotonic() - started < DEADLINE + 2


async def test_blank_lines_do_not_keep_a_connection_that_asks_nothing(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    reader, writer = connection
    started = time.monotonic()

    async def blank_lines() -> None:
        for _ in range(100):
            writer.write(b"\r\n")
            await asyncio.sleep(0.2)

    sending = asyncio.create_task(blank_lines())
    try:
        assert await closed_by_server(reader) == b""
    finally:
        sending.cancel()
    assert DEADLINE - 0.1 <= time.monotonic() - started < DEADLINE + 2


async def test_a_websocket_outlives_the_deadline(server: ServeProcess) -> None:
    async with connect(
        server.ws_url, subprotocols=[Subprotocol("graphql-transport-ws")], proxy=None
    ) as ws:
        await asyncio.sleep(DEADLINE * 3)
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "pong"
