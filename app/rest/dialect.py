"""What every vendor dialect shares: a strict JSON body, the caller, errors in its own format."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Scope

from app.auth.principal import Principal
from app.domain.strict_json import parse_json
from app.errors import (
    BadParams,
    NotAuthenticated,
    PayloadTooLarge,
    SearchStatsError,
    retry_after,
)
from app.http.bodies import declared_length
from app.services.limits import Access, admitted_caller, client_subject
from app.services.metrics import CLIENT_CLOSED_REQUEST
from app.services.record import Client
from app.services.runtime import Runtime

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
RenderError = Callable[[Request, SearchStatsError], Response]


def guarded(render: RenderError) -> Callable[[Endpoint], Endpoint]:
    """Answer every failure in the dialect's format: known errors as they are, others masked."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded_endpoint(request: Request) -> Response:
            try:
                return await endpoint(request)
            except SearchStatsError as error:
                return _rendered(render, request, error)
            except ClientDisconnect:
                # Gone before its body ended: nobody to answer, and no fault of the service's.
                log.debug("client gone during %s %s", request.method, request.scope["path"])
                return Response(status_code=CLIENT_CLOSED_REQUEST)
            except Exception:
                # The client learns nothing of the cause; the operator finds it in the log.
                log.exception(
                    "unexpected error answering %s %s", request.method, request.scope["path"]
                )
                return _rendered(render, request, SearchStatsError())

        return guarded_endpoint

    return decorate


# A 401 names the schemes the server takes (RFC 9110, 11.6.1): an API key as Doofinder's
# clients send it, and a key or a JWT as a bearer token.
CHALLENGE = 'Bearer realm="searchstats", Token realm="searchstats"'


def _rendered(render: RenderError, request: Request, error: SearchStatsError) -> Response:
    response = render(request, error)
    seconds = retry_after(error)
    if seconds is not None:
        response.headers["Retry-After"] = str(seconds)
    if isinstance(error, NotAuthenticated):
        response.headers["WWW-Authenticate"] = CHALLENGE
    return response


async def read_json_object(request: Request, *, limit: int) -> dict[str, Any]:
    """The request's body as a JSON object; anything else is a 400, never a 500."""
    if not _is_json(_header(request.scope, b"content-type")):
        raise BadParams("Content-Type must be application/json")
    body = await _read_at_most(request, limit)
    if not body.strip():
        raise BadParams("the request body is empty: expected a JSON object")
    value = parse_json(body)
    if not isinstance(value, dict):
        raise BadParams("the request body must be a JSON object")
    return value


def _is_json(content_type: str | None) -> bool:
    media_type = (content_type or "").partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def _read_at_most(request: Request, limit: int) -> bytes:
    # Counted while streaming, so a body without (or lying about) Content-Length is capped too,
    # and the 413 is answered in the dialect's own format. Chunks are joined once at the end: a
    # growing buffer would be copied as it grows, holding the body twice at times. Read from
    # ``receive`` itself, not through ``Request.stream``, an async generator costing 2% of a
    # REST event's instructions; the body is read once, here.
    if (declared_length(request.scope) or 0) > limit:
        raise PayloadTooLarge(f"the request body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def caller(runtime: Runtime, request: Request, access: Access) -> Principal:
    """The account the ``Authorization`` header proves (or 401), within its rate limit (or 429)."""
    return await admitted_caller(
        authenticator=runtime.authenticator,
        limits=runtime.limits,
        authorization=_header(request.scope, b"authorization"),
        client=runtime.addresses.of_scope(request.scope),
        access=access,
    )


async def admit_anonymous(runtime: Runtime, request: Request, access: Access) -> None:
    """Count a request without credentials against its client's address (or refuse it, 429)."""
    await runtime.limits.admit(client_subject(runtime.addresses.of_scope(request.scope)), access)


def client_of(request: Request, door: str) -> Client:
    return Client(door=door, user_agent=_header(request.scope, b"user-agent"))


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lowercase, as ASGI gives it), or None.

    Read from the scope's list: ``request.headers`` builds a mapping whose every ``get``
    lowercases and encodes the name and goes through ``Mapping.get``, for the few fixed headers
    a door reads.
    """
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None
