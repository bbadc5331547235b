"""Telling a database that is down (retry later) from a request that is wrong."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.errors import Unavailable

log = logging.getLogger(__name__)


def is_storage_down(error: BaseException) -> bool:
    """True for failures of the database itself (gone, locked, full), not of the data."""
    if isinstance(error, OperationalError | InterfaceError | PoolTimeout | OSError | TimeoutError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


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
