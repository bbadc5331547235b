"""Read connections with a deadline: a query past it is cancelled inside the database."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import Timeout, Unavailable
from app.storage.database import Database
from app.storage.recorder import is_storage_down

QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for statement_timeout


@asynccontextmanager
async def reading(database: Database, seconds: float) -> AsyncIterator[AsyncConnection]:
    """A read-only use of one connection; raises Timeout past ``seconds``.

    PostgreSQL cancels the statement itself (``statement_timeout``); SQLite's statement is
    interrupted from the event loop, so in both the worker is free again at the deadline.
    """
    timer: asyncio.TimerHandle | None = None
    try:
        async with database.engine.connect() as conn:
            if database.is_sqlite:
                raw = (await conn.get_raw_connection()).driver_connection
                # aiosqlite keeps its sqlite3 connection private; interrupt() is thread-safe.
                native: sqlite3.Connection = raw._connection  # type: ignore[union-attr]
                timer = asyncio.get_running_loop().call_later(seconds, native.interrupt)
            else:
                milliseconds = max(1, int(seconds * 1000))
                await conn.execute(text(f"SET LOCAL statement_timeout = {milliseconds}"))
            try:
                yield conn
            finally:
                await conn.rollback()
    except DBAPIError as error:
        if _was_cancelled(error):
            raise Timeout("the stats query ran past its deadline and was cancelled") from None
        if is_storage_down(error):
            raise Unavailable(retry_after=1) from None
        raise
    except (OSError, TimeoutError):
        raise Unavailable(retry_after=1) from None
    finally:
        if timer is not None:
            timer.cancel()


def _was_cancelled(error: DBAPIError) -> bool:
    if getattr(error.orig, "sqlstate", None) == QUERY_CANCELED:
        return True
    return isinstance(error, OperationalError) and "interrupted" in str(error.orig)
