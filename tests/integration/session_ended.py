"""A PostgreSQL connection as asyncpg holds it between the server's farewell and its close.

When the server ends an idle session (a restart, ``pg_terminate_backend``, an idle timeout) it
sends one FATAL ``ErrorResponse`` and closes the socket. asyncpg reads the two in different
turns of the event loop; between them the connection says it is open and refuses any
statement as out of step (``InternalClientError``). The moment is short and comes by chance
under load, so the tests make it: they hand asyncpg the farewell and not the close.
"""

from __future__ import annotations

import struct
from typing import Any


def farewell(sqlstate: str = "57P01") -> bytes:
    """The ErrorResponse a backend sends as it ends the session (57P01: admin_shutdown)."""
    fields = [
        b"SFATAL",
        b"VFATAL",
        b"C" + sqlstate.encode(),
        b"Mterminating connection due to administrator command",
    ]
    body = b"".join(field + b"\0" for field in fields) + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


def end_session_unnoticed(driver: Any) -> None:
    """``driver`` (an asyncpg connection) has read its server's farewell, not yet its close."""
    driver._protocol.data_received(farewell())
