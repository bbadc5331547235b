"""The access log: one line per request, without the client's address or User-Agent.

It replaces uvicorn's, which logs each client's address: here a client is its pseudonym (a keyed
hash that changes daily, see ``app.auth.addresses``), and the path is logged without its query
string, which may carry what users searched for. Each request gets an id (the client's
``X-Request-ID`` when well-formed), returned in the response's ``X-Request-ID`` and carried by every
line logged while it is served. The same place times each request for the metrics, by route
template (never the raw path), and counts the errors answered, by code. The line can be turned
off (``SEARCHSTATS_ACCESS_LOG=false``: it is about a tenth of a REST event's CPU); the rest
cannot: the request id, the metrics and every other line stay.
"""

from __future__ import annotations

import copy
import functools
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import LOGGING_CONFIG

from app.auth.addresses import ClientAddresses
from app.http.health import PROBES
from app.http.json_logs import JsonLines, accepted_request_id, request_id
from app.http.log_stream import LoopBatchedStream
from app.services.metrics import ERROR_CODES_KEY, Metrics, error_codes

log = logging.getLogger("searchstats.access")
REQUEST_ID_HEADER = b"x-request-id"


class AccessLog:
    def __init__(
        self,
        app: ASGIApp,
        *,
        addresses: ClientAddresses,
        metrics: Metrics,
        lines: bool = True,
    ) -> None:
        self.app = app
        self.addresses = addresses
        self.metrics = metrics
        self.lines = lines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        rid = accepted_request_id(_header(scope, REQUEST_ID_HEADER))
        token = request_id.set(rid)
        rid_header = (REQUEST_ID_HEADER, rid.encode())

        async def recording_send(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            elif kind == "websocket.accept":
                status = 101
                self.metrics.websockets.inc()
            elif kind == "websocket.close" and not status:
                status = 403  # closed before the handshake: the upgrade is refused
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self._finished(scope, status or 500, time.perf_counter() - started)
            request_id.reset(token)

    def _finished(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope.get("method", "WEBSOCKET")
        route = getattr(scope.get("route"), "path", None) or _unrouted(scope, method)
        if scope["type"] == "http":
            self.metrics.observe_request(route, method, seconds)
            if (status >= 400 or ERROR_CODES_KEY in scope) and route not in PROBES:
                self.metrics.count_errors(error_codes(scope, status))
        elif status == 101:
            self.metrics.websockets.dec()
        if not (self.lines and log.isEnabledFor(logging.INFO)):
            return
        path = scope["path"][:200]
        duration_ms = round(seconds * 1000, 1)
        fields = {
            "request_id": request_id.get(),
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": duration_ms,
            "client": self.addresses.of_scope(scope),
        }
        message = f"{method} {path} {status} {duration_ms:.1f}ms"
        direct = _direct_json_stream()
        if direct is None:
            log.handle(_access_record(message, fields))
            return
        stream, formatter = direct
        stream.write_line(formatter.line(time.time(), "INFO", log.name, message, fields))


def _unrouted(scope: Scope, method: str) -> str:
    """The route label of a request no route took: a CORS preflight, answered before routing
    (``app.http.cors``), is one label of its own, not counted with the unknown paths."""
    if method == "OPTIONS":
        names = {name for name, _ in scope["headers"]}
        if {b"origin", b"access-control-request-method"} <= names:
            return "preflight"
    return "unmatched"


def _direct_json_stream() -> tuple[LoopBatchedStream, JsonLines] | None:
    """Where the access line can be written without a record: the service's own logging
    (``log_config(json=True)``) and nothing more, the line going from the access logger, with no
    filter, to the root's one handler, a ``LoopBatchedStream`` of ``JsonLines``.

    There the line is what the record would have become, made directly: the record, its trip
    through the loggers and handler, and its formatting were most of the access line's cost.
    Any other wiring (a handler or filter added, text lines, a test capturing records) gets
    the record.
    """
    root = logging.root
    if (
        log.disabled
        or log.handlers
        or log.filters
        or not log.propagate
        or log.parent is not root
        or root.filters
        or len(root.handlers) != 1
    ):
        return None
    handler = root.handlers[0]
    formatter = handler.formatter
    if (
        type(handler) is not LoopBatchedStream
        or handler.filters
        or handler.level > logging.INFO
        or type(formatter) is not JsonLines
    ):
        return None
    return handler, formatter


class _AccessRecord(logging.LogRecord):
    """One access line's record, made at a fraction of ``LogRecord``'s cost.

    ``LogRecord.__init__`` works out for each record what is the same for every access line:
    the source file's name and module, the level's name, and (unless ``lean_log_records``
    turned them off) the thread and process. Here that is copied from a record made once; only
    the time, the message and the line's fields are the record's own. It is an ordinary record
    otherwise, handled by the logger's filters and handlers like any other (a factory set with
    ``logging.setLogRecordFactory`` is not used for it).
    """

    def __init__(self, message: str, fields: dict[str, object], constant: dict[str, object]):
        # LogRecord.__init__ is not called: everything it sets is set here.
        self.__dict__.update(constant)
        self.__dict__.update(fields)
        created = time.time()
        self.created = created
        self.msecs = int((created - int(created)) * 1000) + 0.0
        self.relativeCreated = (created - logging._startTime) * 1000  # type: ignore[attr-defined]
        self.msg = message


def _access_record(message: str, fields: dict[str, object]) -> logging.LogRecord:
    if logging.logThreads or logging.logProcesses or logging.logMultiprocessing:
        # The thread and process are the record's own: made the ordinary way.
        return log.makeRecord(log.name, logging.INFO, __file__, 0, message, (), None, extra=fields)
    return _AccessRecord(message, fields, _constant_fields())


@functools.cache
def _constant_fields() -> dict[str, object]:
    model = logging.LogRecord(log.name, logging.INFO, __file__, 0, "", (), None)
    return {
        name: value
        for name, value in model.__dict__.items()
        if name not in ("created", "msecs", "relativeCreated", "msg")
    }


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


class WithoutClientAddresses(logging.Filter):
    """Drops uvicorn's own line per websocket, which names the client's address."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith('%s - "WebSocket'))


def lean_log_records() -> None:
    """No line of ``log_config``'s shows the thread or process it came from: records made
    without gathering them save a few lookups each, one record per request."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def log_config(*, json: bool = True) -> dict[str, Any]:
    """uvicorn's logging, with our loggers shown and nothing that names a client's address.

    ``json``: every line one JSON object (``app.http.json_logs``), uvicorn's own lines included.
    """
    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["default"]["class"] = "app.http.log_stream.LoopBatchedStream"
    if json:
        config["formatters"]["default"] = {"()": "app.http.json_logs.JsonLines"}
    config["filters"] = {"no_client_addresses": {"()": WithoutClientAddresses}}
    config["loggers"]["uvicorn.error"]["filters"] = ["no_client_addresses"]
    config["loggers"]["uvicorn.access"]["level"] = "WARNING"  # unused: access_log=False
    config["root"] = {"handlers": ["default"], "level": "INFO"}
    return config
