"""The access log: one line per request, without the client's address or User-Agent.

It replaces uvicorn's, which logs each client's address: here a client is its pseudonym (a keyed
hash that changes daily, see ``app.auth.addresses``), and the path is logged without its query
string, which may carry what users searched for.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import LOGGING_CONFIG

from app.auth.addresses import ClientAddresses

log = logging.getLogger("searchstats.access")


class AccessLog:
    def __init__(self, app: ASGIApp, *, addresses: ClientAddresses) -> None:
        self.app = app
        self.addresses = addresses

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "websocket.accept":
                status = 101
            elif message["type"] == "websocket.close" and not status:
                status = 403  # closed before the handshake: the upgrade is refused
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            log.info(
                "%s %s %d %.1fms client=%s",
                scope.get("method", "WEBSOCKET"),
                scope["path"][:200],
                status or 500,
                (time.perf_counter() - started) * 1000,
                self.addresses.of_scope(scope),
            )


class WithoutClientAddresses(logging.Filter):
    """Drops uvicorn's own line per websocket, which names the client's address."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith('%s - "WebSocket'))


def log_config() -> dict[str, Any]:
    """uvicorn's logging, with our loggers shown and nothing that names a client's address."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"no_client_addresses": {"()": WithoutClientAddresses}}
    config["loggers"]["uvicorn.error"]["filters"] = ["no_client_addresses"]
    config["loggers"]["uvicorn.access"]["level"] = "WARNING"  # unused: access_log=False
    config["root"] = {"handlers": ["default"], "level": "INFO"}
    return config
