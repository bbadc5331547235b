"""Telling a database that is down (retry later) from a request that is wrong."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.errors import Unavailable

log = logging.getLogger(__name__)


# PostgreSQL's SQLSTATEs for a server that cannot serve now: connection exceptions (class 08),
# too many connections, and shutting down or starting up (57P01-57P03), which asyncpg reports
# as plain errors, not as operational ones.
DOWN_SQLSTATE_CLASSES = ("08",)
DOWN_SQLSTATES = frozenset({"53300", "57P01", "57P02", "57P03"})


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
