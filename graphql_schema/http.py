"""The GraphQL door's transport: its errors in GraphQL's shape, its JSON read strictly.

Strawberry answers a request it cannot run (a body that is not JSON, a batch, a wrong method)
with plain text; here every such answer is ``{"errors": [{"message", "extensions": {"code"}}]}``
with the contract's code and status, as are the body limits' 413 and 408. Bodies and ``variables``
go through the strict reader every door shares. An operation refused by the rate limit is a 429
with ``Retry-After``. Websocket messages are read by the same reader, and one over the body cap
closes the connection (1009; uvicorn's ``ws_max_size`` refuses it before it is even read).

The response's media type is negotiated as GraphQL over HTTP has it: a client that asks for
``application/graphql-response+json`` gets it, and with it a 400 without ``data`` for a document
that never ran; every other client gets ``application/json`` and the statuses it always had.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncGenerator
from typing import Any

import orjson
from cross_web import HTTPException, StarletteRequestAdapter
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived
from strawberry.http.types import QueryParams
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types.execution import ExecutionResult
from strawberry.types.graphql import OperationType

from app.domain.strict_json import parse_json
from app.errors import BadParams, MethodNotAllowed, NotFound, SearchStatsError, retry_after
from app.services.metrics import CLIENT_CLOSED_REQUEST, note_error_code
from graphql_schema.context import Context
from graphql_schema.extensions import SUBSCRIPTION_OVER_HTTP

log = logging.getLogger("searchstats.graphql")

MESSAGE_TOO_BIG = 1009
SUBSCRIPTION, MUTATION = OperationType.SUBSCRIPTION, OperationType.MUTATION
ALLOWED_METHODS = "GET, POST"
NOT_AN_OBJECT = 'a GraphQL request is a JSON object: {"query": "…", "variables": {…}}'
GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON_MEDIA_TYPE = "application/json"


@functools.lru_cache(maxsize=256)  # clients send the same few Accept headers
def negotiated_media_type(accept: str | None) -> str:
    """``application/graphql-response+json`` when the client names it and prefers it to JSON,
    else ``application/json``: the default for a client that names neither (``*/*``, none, or
    only types this door never answers in), as GraphQL over HTTP asks of a server before
    every client knows the newer type. Of two equal weights the one listed first wins."""
    if not accept or "graphql-response+json" not in accept.lower():
        return JSON_MEDIA_TYPE
    weights: dict[str, tuple[float, int]] = {}  # media range: (q, position)
    for position, entry in enumerate(accept.lower().split(",")):
        media_range, *parameters = (part.strip() for part in entry.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                try:
                    weight = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    weight = 0.0  # an entry whose weight cannot be read is not relied on
        weights.setdefault(media_range, (weight, position))
    graphql_weight, graphql_position = weights.get(GRAPHQL_RESPONSE, (0.0, 0))
    json_weight, json_position = next(
        (weights[name] for name in (JSON_MEDIA_TYPE, "application/*", "*/*") if name in weights),
        (0.0, 0),
    )
    named_json_first = JSON_MEDIA_TYPE in weights and json_position < graphql_position
    if graphql_weight > json_weight or (graphql_weight == json_weight > 0 and not named_json_first):
        return GRAPHQL_RESPONSE
    return JSON_MEDIA_TYPE


class NegotiatedResponse(Response):
    """Strawberry's sub-response (the status and headers resolvers may set), carrying the media
    type negotiated for the answer and whether the operation never ran."""

    def __init__(self, media_type: str) -> None:
        super().__init__()
        self.status_code = None  # type: ignore[assignment]  # unset: Strawberry's 200
        del self.headers["content-length"]
        self.negotiated = media_type
        self.never_ran = False


def error_response(error: SearchStatsError, media_type: str = JSON_MEDIA_TYPE) -> Response:
    """One error as a GraphQL response, with the contract's status and code."""
    headers = {}
    seconds = retry_after(error)
    if seconds is not None:
        headers["Retry-After"] = str(seconds)
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = ALLOWED_METHODS
    return JSONResponse(
        {"errors": [{"message": error.message, "extensions": {"code": error.code}}]},
        status_code=error.status,
        headers=headers or None,
        media_type=media_type,
    )


def _from_http(exception: HTTPException, method: str) -> SearchStatsError:
    """Strawberry's own refusals (unparsable request, batch, method) in the contract's words."""
    cause = exception.__cause__
    if isinstance(cause, InvalidOperationTypeError):
        if cause.operation_type is SUBSCRIPTION:
            return BadParams(SUBSCRIPTION_OVER_HTTP)
        if cause.operation_type is MUTATION and method == "GET":
            # GraphQL over HTTP: a mutation is sent with POST; GET is for queries (a link, a
            # prefetch or a cache must never change anything).
            return MethodNotAllowed("a mutation is sent with POST, not GET")
    if exception.status_code == 405:
        return MethodNotAllowed(f"{method} is not allowed here; /graphql answers {ALLOWED_METHODS}")
    error: SearchStatsError = (
        NotFound(exception.reason) if exception.status_code == 404 else BadParams(exception.reason)
    )
    error.status = exception.status_code
    return error


class CappedWebSocketAdapter(ASGIWebSocketAdapter):
    """Reads each message strictly; one larger than the body cap closes the connection."""

    async def iter_json(
        self, *, ignore_parsing_errors: bool = False
    ) -> AsyncGenerator[object, None]:
        assert isinstance(self.view, GraphQLDoor)
        limit = self.view.max_message_bytes
        try:
            while self.ws.application_state != WebSocketState.DISCONNECTED:
                text = await self.ws.receive_text()
                if _utf8_length_over(text, limit):
                    await self.ws.close(MESSAGE_TOO_BIG, f"messages are limited to {limit} bytes")
                    return
                try:
                    yield parse_json(text, source="the message")
                except BadParams as error:
                    if not ignore_parsing_errors:
                        raise NonJsonMessageReceived from error
                # A turn of the loop between messages: those that arrived together are read
                # without one, so a client gone meanwhile was noticed only after every one of
                # them had been answered (asyncio warning of each write past the fifth), and
                # a burst held every other client of the worker until it was through.
                await asyncio.sleep(0)
        except KeyError as error:
            raise NonTextMessageReceived from error
        except WebSocketDisconnect:
            pass


def _utf8_length_over(text: str, limit: int) -> bool:
    """Whether the message took more than ``limit`` bytes on the wire: a character takes up
    to four, so counting characters let through a message of four times the cap."""
    return len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit)


class CaseInsensitiveContentType(StarletteRequestAdapter):
    """A media type is case-insensitive (RFC 9110): ``APPLICATION/JSON`` is JSON. Strawberry
    compares it as written; here it is read lowercased (only JSON bodies are read, so no
    parameter whose case matters, a multipart boundary, is ever needed)."""

    @property
    def content_type(self) -> str | None:
        value = super().content_type
        return value.lower() if value else value


class GraphQLDoor(GraphQL[Context, None]):
    request_adapter_class = CaseInsensitiveContentType
    websocket_adapter_class = CappedWebSocketAdapter
    max_message_bytes: int = 8 * 1024 * 1024

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        media_type = negotiated_media_type(request.headers.get("accept"))
        try:
            response = await self.run(request)
        except SearchStatsError as error:
            response = error_response(error, media_type)
        except HTTPException as exception:
            response = error_response(_from_http(exception, scope["method"]), media_type)
        except ClientDisconnect:
            # Gone before its body ended: nobody to answer, and no fault of the service's.
            log.debug("client gone during %s %s", scope["method"], scope["path"])
            response = Response(status_code=CLIENT_CLOSED_REQUEST)
        except Exception:
            log.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            response = error_response(SearchStatsError(), media_type)
        await response(scope, receive, send)

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        return NegotiatedResponse(negotiated_media_type(request.headers.get("accept")))

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        if not isinstance(sub_response, NegotiatedResponse):
            return super().create_response(response_data, sub_response)
        if sub_response.never_ran and isinstance(response_data, dict):
            # GraphQL: "If an error was raised before execution begins, the data entry should
            # not be present in the result." Kept as null in application/json, as it always was.
            response_data = response_data.copy()
            response_data.pop("data", None)
        response = super().create_response(response_data, sub_response)
        response.headers["content-type"] = sub_response.negotiated
        return response

    def parse_json(self, data: str | bytes) -> Any:
        """Request bodies, read strictly."""
        return parse_json(data)

    def parse_query_params(self, params: QueryParams) -> dict[str, Any]:
        """A GET's ``variables`` and ``extensions``, read strictly; what is wrong with one names
        that parameter (a GET has no body to blame)."""
        parsed = dict(params)
        for name in ("variables", "extensions"):
            value = parsed.get(name)
            if value:
                parsed[name] = parse_json(value, source=f"the {name} parameter")
        return parsed

    async def parse_http_body(self, request_adapter: Any) -> Any:
        """The request's query, variables and operation name, as Strawberry reads them, with
        what it does not check: a JSON body that is not an object (Strawberry calls ``.get``
        on it), and an empty ``operationName``, which GraphQL over HTTP reads as none."""
        try:
            request_data = await super().parse_http_body(request_adapter)
        except AttributeError:
            raise BadParams(NOT_AN_OBJECT) from None
        if isinstance(request_data, GraphQLRequestData) and request_data.operation_name == "":
            request_data.operation_name = None
        return request_data

    def encode_json(self, data: object) -> str:
        """Responses and websocket messages (text: the protocols send text frames)."""
        try:
            return orjson.dumps(data).decode()
        except TypeError:  # beyond what orjson writes: an integer over 64 bits
            return json.dumps(data, separators=(",", ":"))

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: Any,
    ) -> ExecutionResult:
        result = await super().execute_single(
            request, request_adapter, sub_response, context, root_value, request_data
        )
        for error in result.errors or ():
            note_error_code(request.scope, (error.extensions or {}).get("code", "internal_error"))
        refusal = _refusal(result)
        if refusal is not None:
            # Refused as a whole (over the rate limit, storage down): HTTP clients and proxies
            # back off on the status.
            sub_response.status_code = refusal.status
            sub_response.headers["Retry-After"] = str(retry_after(refusal))
        if (
            isinstance(sub_response, NegotiatedResponse)
            and sub_response.negotiated == GRAPHQL_RESPONSE
            and _never_ran(result)
        ):
            sub_response.never_ran = True
            if sub_response.status_code is None:
                original = result.errors[0].original_error if result.errors else None
                sub_response.status_code = (
                    original.status if isinstance(original, SearchStatsError) else 400
                )
        return result


def _never_ran(result: ExecutionResult) -> bool:
    """No field ran: the document did not parse or validate, its variables did not fit, or the
    operation was refused as a whole. A field's error always has the field's path."""
    return (
        result.data is None
        and bool(result.errors)
        and all(error.path is None for error in result.errors or ())
    )


def _refusal(result: ExecutionResult) -> SearchStatsError | None:
    """The error that left no data at all, when it tells the client to retry later."""
    if result.data is not None or not result.errors:
        return None
    original = result.errors[0].original_error
    if isinstance(original, SearchStatsError) and retry_after(original) is not None:
        return original
    return None
