"""Read connections with a deadline: a query past it is cancelled inside the database."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import Timeout, Unavailable
from app.storage.database import Database
from app.storage.outages import is_storage_down

QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for statement_timeout
# SQLite calls the progress handler every this many virtual-machine instructions.
SQLITE_PROGRESS_STEPS = 10_000
# For the read's transaction, in one round trip: the deadline, and no parallel workers. A stats
# read takes milliseconds; the planner, which cannot know how few rollup rows each bucket's range
# holds, would otherwise start workers for it that cost more than the whole read.
_POSTGRESQL_READ_SETTINGS = text(
    "SELECT set_config('statement_timeout', :timeout, true), "
    "set_config('max_parallel_workers_per_gather', '0', true)"
)


@asynccontextmanager
async def reading(database: Database, seconds: float) -> AsyncIterator[AsyncConnection]:
    """A read-only use of one connection; raises Timeout past ``seconds``.

    PostgreSQL cancels a statement itself (``statement_timeout``); on SQLite a progress handler
    aborts whatever statement runs past the deadline. Either way the worker is free again.
    PostgreSQL also runs the read without parallel workers (see _POSTGRESQL_READ_SETTINGS).
    """
    try:
        async with database.engine.connect() as conn:
            if database.is_sqlite:
                await _sqlite_deadline(conn, _expired_after(seconds))
            else:
                milliseconds = max(1, int(seconds * 1000))
                await conn.execute(_POSTGRESQL_READ_SETTINGS, {"timeout": str(milliseconds)})
            try:
                yield conn
            finally:
                await conn.rollback()
                if database.is_sqlite:
                    await _sqlite_deadline(conn, None)
    except DBAPIError as error:
        if _was_cancelled(error):
            raise Timeout("the stats query ran past its deadline and was cancelled") from None
        if is_storage_down(error):
            raise Unavailable(retry_after=1) from None
        raise
    except (OSError, TimeoutError):
        raise Unavailable(retry_after=1) from None


def _expired_after(seconds: float) -> Callable[[], int]:
    deadline = time.monotonic() + seconds

    def expired() -> int:
        return 1 if time.monotonic() > deadline else 0  # non-zero aborts the statement

    return expired


async def _sqlite_deadline(conn: AsyncConnection, handler: Callable[[], int] | None) -> None:
    driver = (await conn.get_raw_connection()).driver_connection
    await driver.set_progress_handler(handler, SQLITE_PROGRESS_STEPS)  # type: ignore[union-attr]


def _was_cancelled(error: DBAPIError) -> bool:
    if getattr(error.orig, "sqlstate", None) == QUERY_CANCELED:
        return True
    return isinstance(error, OperationalError) and "interrupted" in str(error.orig)
