"""A vendor door's JSON body, read from ``receive`` chunk by chunk: joined, capped, disconnects."""

from __future__ import annotations

import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from app.errors import PayloadTooLarge
from app.rest.dialect import read_json_object


def request_of(*messages: Message, length: int | None = None) -> Request:
    pending = list(messages)

    async def receive() -> Message:
        return pending.pop(0)

    headers = [(b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


def chunk(body: bytes, *, more: bool) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


async def test_a_body_in_chunks_is_read_whole() -> None:
    request = request_of(
        chunk(b'{"store": "s",', more=True),
        chunk(b"", more=True),
        chunk(b' "url": "/shoes"}', more=False),
    )
    assert await read_json_object(request, limit=100) == {"store": "s", "url": "/shoes"}


async def test_a_body_in_one_message_is_read() -> None:
    request = request_of(chunk(b'{"a": 1}', more=False), length=8)
    assert await read_json_object(request, limit=8) == {"a": 1}


async def test_chunks_past_the_limit_are_refused_without_a_declared_length() -> None:
    request = request_of(chunk(b'{"a": "' + b"x" * 60, more=True), chunk(b'"}', more=False))
    with pytest.raises(PayloadTooLarge):
        await read_json_object(request, limit=64)


async def test_a_client_gone_before_the_body_ended_is_a_disconnect() -> None:
    request = request_of(chunk(b'{"a":', more=True), {"type": "http.disconnect"})
    with pytest.raises(ClientDisconnect):
        await read_json_object(request, limit=100)
