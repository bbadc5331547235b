"""Request bodies on every door: 413 past the cap before the body is in memory (chunked too), 408
for a body that trickles in past the deadline; each in the door's own error format."""

from __future__ import annotations

import asyncio
import logging
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Message

from app.main import create_app
from app.services.runtime import Runtime, build_runtime
from app.settings import Settings
from tests.api.helpers import stored_events
from tests.conftest import Tenant, make_tenant

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

MB = 1024 * 1024
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Door:
    path: str
    authenticated: bool
    # The error's code and message, read from the door's own error body.
    read: Callable[[Any], tuple[str | int, str]]


DOORS = {
    "dspace": Door(
        "/api/statistics/viewevents", False, lambda body: (body["status"], body["message"])
    ),
    "doofinder": Door(
        "/api/v2/stats/visit",
        True,
        lambda body: (body["error"]["code"], body["error"]["message"]),
    ),
    "workplace": Door("/api/ws/v1/analytics/event", True, lambda body: ("", body["errors"][0])),
    "graphql": Door(
        "/graphql",
        True,
        lambda body: (body["errors"][0]["extensions"]["code"], body["errors"][0]["message"]),
    ),
}
CODES: dict[str, dict[int, str | int]] = {
    "dspace": {413: 413, 408: 408},
    "doofinder": {413: "payload_too_large", 408: "timeout"},
    "workplace": {413: "", 408: ""},
    "graphql": {413: "payload_too_large", 408: "timeout"},
}


class Sent:
    """A chunked body of about ``total`` bytes of JSON; counts the bytes the server pulled."""

    def __init__(self, total: int, *, pause: float = 0.0) -> None:
        self.total = total
        self.pause = pause
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._count(b'{"query": "')
        while self.pulled < self.total:
            if self.pause:
                await asyncio.sleep(self.pause)
            yield self._count(b"x" * min(CHUNK, self.total - self.pulled))
        yield self._count(b'"}')

    def _count(self, chunk: bytes) -> bytes:
        self.pulled += len(chunk)
        return chunk


@asynccontextmanager
async def serving(
    settings: Settings, **overrides: Any
) -> AsyncIterator[tuple[Runtime, Tenant, httpx.AsyncClient]]:
    runtime = build_runtime(settings.model_copy(update=overrides))
    await runtime.start()
    try:
        tenant = await make_tenant(runtime, "acme")
        transport = httpx.ASGITransport(app=create_app(runtime.settings, runtime=runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield runtime, tenant, client
    finally:
        await runtime.stop()


def headers(door: Door, tenant: Tenant, **extra: str) -> dict[str, str]:
    sent = {"Content-Type": "application/json", **extra}
    return sent | (tenant.token if door.authenticated else {})


@pytest.mark.parametrize("name", DOORS)
async def test_a_9_mb_chunked_body_is_refused_with_413_without_reading_it_all(
    settings: Settings, name: str
) -> None:
    door = DOORS[name]
    async with serving(settings) as (runtime, tenant, client):
        limit = runtime.settings.max_body_bytes
        assert limit == 8 * MB  # the documented default
        body = Sent(9 * MB)
        response = await client.post(door.path, content=body, headers=headers(door, tenant))
        assert response.status_code == 413, response.text
        code, message = door.read(response.json())
        assert code == CODES[name][413]
        assert message == f"the request body is over {limit} bytes"
        # Reading stopped at the cap: the last megabyte was never pulled from the client.
        assert limit < body.pulled <= limit + CHUNK
        assert await stored_events(runtime) == []


@pytest.mark.parametrize("name", ["dspace", "graphql"])
async def test_memory_stays_bounded_by_the_cap_not_by_the_body(
    settings: Settings, name: str
) -> None:
    door = DOORS[name]
    async with serving(settings, max_body_bytes=MB) as (_runtime, tenant, client):
        tracemalloc.start()
        try:
            response = await client.post(
                door.path, content=Sent(9 * MB), headers=headers(door, tenant)
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert response.status_code == 413
        assert peak < 3 * MB, f"peak {peak / MB:.1f} MB for a 1 MB cap"


@pytest.mark.parametrize("name", DOORS)
async def test_a_declared_length_over_the_cap_is_refused_before_reading(
    settings: Settings, name: str
) -> None:
    door = DOORS[name]
    async with serving(settings) as (_runtime, tenant, client):
        body = Sent(9 * MB)
        declared = str(9 * MB + 13)
        response = await client.post(
            door.path, content=body, headers=headers(door, tenant, **{"Content-Length": declared})
        )
        assert response.status_code == 413
        assert body.pulled == 0
        assert door.read(response.json())[0] == CODES[name][413]


@pytest.mark.parametrize("name", DOORS)
async def test_a_body_trickling_past_the_deadline_is_refused_with_408(
    settings: Settings, name: str
) -> None:
    door = DOORS[name]
    async with serving(settings, body_timeout_seconds=0.3) as (runtime, tenant, client):
        body = Sent(40 * CHUNK, pause=0.05)  # 40 pauses: two seconds for the whole body
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await client.post(door.path, content=body, headers=headers(door, tenant))
        assert response.status_code == 408, response.text
        assert loop.time() - started < 1
        code, message = door.read(response.json())
        assert code == CODES[name][408]
        assert message == "the request body did not arrive within 0.3 seconds"
        assert await stored_events(runtime) == []


async def test_a_body_arriving_in_time_is_read(settings: Settings) -> None:
    async with serving(settings, body_timeout_seconds=2) as (runtime, tenant, client):
        query = 'mutation { recordSearch(input: {query: "slow but steady"}) { id } }'
        encoded = httpx.Request("POST", "/", json={"query": query}).content

        async def slowly() -> AsyncIterator[bytes]:
            for index in range(0, len(encoded), 16):
                await asyncio.sleep(0.01)
                yield encoded[index : index + 16]

        response = await client.post(
            "/graphql", content=slowly(), headers=headers(DOORS["graphql"], tenant)
        )
        assert "errors" not in response.json(), response.text
        assert [e.query for e in await stored_events(runtime)] == ["slow but steady"]


@pytest.mark.parametrize("name", DOORS)
async def test_a_body_that_stops_arriving_is_refused_with_408_while_it_waits(
    settings: Settings, name: str
) -> None:
    """The deadline also ends a read that is waiting, not only one that resumes late."""
    door = DOORS[name]
    async with serving(settings, body_timeout_seconds=0.3) as (runtime, tenant, client):

        async def stalls() -> AsyncIterator[bytes]:
            yield b'{"store": "'
            await asyncio.sleep(5)  # never sends the rest in time
            yield b'x"}'

        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await client.post(door.path, content=stalls(), headers=headers(door, tenant))
        assert response.status_code == 408, response.text
        assert loop.time() - started < 1.5  # the deadline plus at most one sweep, not 5 s
        assert door.read(response.json())[0] == CODES[name][408]
        assert await stored_events(runtime) == []


async def gone_mid_body(app: ASGIApp, path: str, sent_headers: dict[str, str]) -> list[Message]:
    """POST ``path`` declaring 100 bytes, send 8 of them and hang up; what the app sent back."""
    messages: list[Message] = [
        {"type": "http.request", "body": b'{"type":', "more_body": True},
        {"type": "http.disconnect"},
    ]
    answered: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        answered.append(message)

    raw_headers = [(b"host", b"testserver"), (b"content-length", b"100")]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in sent_headers.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    return answered


@pytest.mark.parametrize("name", DOORS)
async def test_a_client_gone_mid_body_is_no_error_of_the_service(
    settings: Settings, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The client closed the connection before its body ended: it was logged as an unexpected
    error with a traceback and counted as internal_error. Nobody is left to answer."""
    door = DOORS[name]
    async with serving(settings) as (runtime, tenant, client):
        app = create_app(runtime.settings, runtime=runtime)
        with caplog.at_level(logging.INFO):
            answered = await gone_mid_body(app, door.path, headers(door, tenant))
        [start] = [m for m in answered if m["type"] == "http.response.start"]
        assert start["status"] == 499  # nginx's "client closed request", in the access line
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
        metrics = (await client.get("/metrics")).text
        assert "searchstats_errors_total{" not in metrics
        assert await stored_events(runtime) == []


@pytest.mark.parametrize("name", DOORS)
async def test_a_declared_length_of_thousands_of_digits_is_over_the_cap(
    settings: Settings, name: str
) -> None:
    """Python's int() refuses a string of more than 4,300 digits: such a Content-Length was a
    500 from the middleware, before any door."""
    door = DOORS[name]
    async with serving(settings) as (_runtime, tenant, client):
        body = Sent(MB)
        declared = "9" * 5000
        response = await client.post(
            door.path, content=body, headers=headers(door, tenant, **{"Content-Length": declared})
        )
        assert response.status_code == 413
        assert body.pulled == 0
        assert door.read(response.json())[0] == CODES[name][413]


@pytest.mark.parametrize("name", ["dspace", "doofinder", "workplace"])
async def test_a_declared_length_in_digits_other_than_ascii_is_no_length(
    settings: Settings, name: str
) -> None:
    """ "²" (byte B2, as a header value is decoded) is a digit to str.isdigit and not to int(): the
    door's own reading of the length was a 500. Not a length, it is ignored: the body is read."""
    door = DOORS[name]
    async with serving(settings) as (_runtime, tenant, client):
        sent = {name.encode(): value.encode() for name, value in headers(door, tenant).items()}
        sent[b"Content-Length"] = b"\xb2"
        response = await client.post(door.path, content=b"{}", headers=sent)
        assert response.status_code == 400, response.text
        assert door.read(response.json())[1].endswith("is required")
