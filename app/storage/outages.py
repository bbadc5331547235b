"""Telling a database that is down (retry later) from a request that is wrong."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


# PostgreSQL's SQLSTATEs for a server that cannot serve now: connection exceptions (class 08),
# a login refused (class 28: the role or its password changed under the service), insufficient
# resources (class 53: disk full, out of memory, too many connections), operator intervention
# (class 57: shutting down or starting up, the database dropped, a session ended as idle, and a
# statement cancelled, by a statement_timeout of the database or the role, or by
# pg_cancel_backend), a lock not had within the role's lock_timeout (55P03), the database
# renamed away (3D000) or taking no connections (55000, ALTER DATABASE … ALLOW_CONNECTIONS
# false: the service sends nothing else that raises it), and a write refused as read-only (a
# standby, or default_transaction_read_only). asyncpg reports these as plain errors, not as
# operational ones. A stats read tells its own deadline's cancellation first (a 408:
# app/storage/deadline.py).
DOWN_SQLSTATE_CLASSES = ("08", "28", "53", "57")
READ_ONLY_SQLSTATE = "25006"  # read_only_sql_transaction
DOWN_SQLSTATES = frozenset({READ_ONLY_SQLSTATE, "3D000", "55000", "55P03"})
SQLITE_READONLY = 8  # the primary result code; extended ones (SQLITE_READONLY_DBMOVED) add bits


def is_storage_down(error: BaseException) -> bool:
    """True for failures of the database itself (gone, locked, full), not of the data."""
    if isinstance(error, OperationalError | InterfaceError | PoolTimeout | OSError | TimeoutError):
        return True
    if not isinstance(error, DBAPIError):
        return False
    sqlstate = str(getattr(error.orig, "sqlstate", None) or "")
    return (
        error.connection_invalidated
        or sqlstate in DOWN_SQLSTATES
        or sqlstate.startswith(DOWN_SQLSTATE_CLASSES)
    )


def is_out_of_step(error: BaseException) -> bool:
    """asyncpg refused to send a statement on a connection still waiting for the end of an
    earlier exchange (``InternalClientError``, "cannot switch to state …").

    So it is after the server ended the session (a restart, ``pg_terminate_backend``, an idle
    timeout) while the connection sat idle: asyncpg has read the server's last message, not yet
    the socket's close, and ``is_closed()`` still says open. Nothing was sent; asyncpg closes the
    connection as it refuses, and what was asked may be asked again on another.
    """
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, asyncpg.InternalClientError):
            return True
        # SQLAlchemy's error holds the driver's as ``orig``; its asyncpg adapter's error holds
        # asyncpg's as its cause.
        seen = seen.orig if isinstance(seen, DBAPIError) else seen.__cause__
    return False


def is_read_only(error: BaseException) -> bool:
    """A write the database refused as read-only (the driver's error, or SQLAlchemy's of it).

    The connection keeps refusing: SQLite opens a file it may not write read-only, for the
    connection's life, and a PostgreSQL session keeps the default_transaction_read_only it
    started with (or stays on the standby it reached). Only a new connection writes again.
    """
    cause = error.orig if isinstance(error, DBAPIError) else error
    code = getattr(cause, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF == SQLITE_READONLY
    return getattr(cause, "sqlstate", None) == READ_ONLY_SQLSTATE


@asynccontextmanager
async def unavailable_when_down() -> AsyncIterator[None]:
    """Turn a database that cannot answer into ``Unavailable`` (503, retry later), not a 500."""
    try:
        yield
    except Exception as error:
        if not is_storage_down(error):
            raise
        log.warning("storage unavailable: %s", type(error).__name__)
        raise Unavailable(retry_after=1) from error


async def unless_stalled(work: Awaitable[T], seconds: float) -> T:
    """``work``'s result, or ``Unavailable`` (503, retry later) once ``seconds`` have passed
    without it.

    A database that stopped answering on a connection already open (a network stall, a frozen
    host) keeps a statement waiting for as long as that lasts: the pool's ping before handing
    out a connection and the main pool's statements have no deadline of their own, and a
    server-side ``statement_timeout`` is only read by a server that answers. Cancelling the wait
    would not end it either: giving the connection back rolls it back, on the same silent
    connection. So ``work`` runs as a task of its own, and the caller stops waiting for it; the
    task goes on until the database answers or the connection fails, and then lets go of its
    connection as usual. The caller hanging up cancels it.
    """
    task = asyncio.ensure_future(work)
    try:
        async with asyncio.timeout(seconds):
            return await asyncio.shield(task)
    except TimeoutError:
        if task.done():
            raise  # the work's own TimeoutError
        task.add_done_callback(_retrieved)
        log.warning("storage unavailable: no answer within %.1f s", seconds)
        raise Unavailable(retry_after=1) from None
    except asyncio.CancelledError:
        task.cancel()
        raise


def _retrieved(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # a late failure nobody waits for is not an error of its own
