"""Statements the group commit sends to PostgreSQL through asyncpg itself.

A batch of the single-event doors is one statement on the group commit's own connection, and
its client side runs on the event loop that serves the requests. Through SQLAlchemy's
``AsyncConnection.execute`` such a statement cost the loop about 160 µs of CPU (the greenlet
hand-off, the DBAPI adapter, the result's rows); sent with asyncpg's own ``fetch``, about 50 µs
(docs/performance.md). Each statement is still written as SQLAlchemy text with named
parameters, and compiled once, by SQLAlchemy's asyncpg dialect, into the ``$n`` form asyncpg
takes (asyncpg keeps it prepared on the connection).

A failure comes out as SQLAlchemy raises one from a statement: ``IntegrityError`` for a
constraint, ``ProgrammingError`` for a statement the server refuses, ``InterfaceError`` for a
connection asyncpg cannot use (closed, or out of step with its server:
``app.storage.outages.is_out_of_step``), ``DBAPIError`` for any other error of the server, each with
asyncpg's own error, and its SQLSTATE, as ``orig``; a connection the server closed marks it
``connection_invalidated``. So the write path tells a database that is down from a batch that is
wrong as it does for every other statement (``app.storage.outages``).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, ProgrammingError
from sqlalchemy.sql.elements import TextClause

# Most specific first: the first class an error is an instance of decides.
_TRANSLATED: tuple[tuple[type[Exception], type[DBAPIError]], ...] = (
    (asyncpg.IntegrityConstraintViolationError, IntegrityError),
    (asyncpg.SyntaxOrAccessError, ProgrammingError),
    (asyncpg.InterfaceError, InterfaceError),
    (asyncpg.InternalClientError, InterfaceError),
    (asyncpg.PostgresError, DBAPIError),
)
# The errors of a statement asyncpg could not send (its ``InternalClientError`` is not an
# ``InterfaceError``: ``app.storage.outages.is_out_of_step``), or the server refused.
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


class DriverStatement:
    """One statement, sent by asyncpg's ``fetch`` with its parameters given by name."""

    __slots__ = ("names", "sql")

    def __init__(self, statement: TextClause) -> None:
        compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        self.sql = str(compiled)
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())

    async def fetch(self, driver: Any, parameters: Mapping[str, Any]) -> list[Any]:
        """The statement's rows (asyncpg records), run on ``driver``, an asyncpg connection."""
        try:
            rows: list[Any] = await driver.fetch(self.sql, *self.arguments(parameters))
        except _DRIVER_ERRORS as error:
            raise as_sqlalchemy_error(self.sql, error, invalidated=driver.is_closed()) from error
        return rows

    def arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        return [parameters[n] for n in self.names]


# The least a table's size counts as: an empty table's statement is not prepared again for its
# first page.
_PAGE_BYTES = 8192


@dataclass
class _Prepared:
    statement: Any  # asyncpg's PreparedStatement
    table_bytes: int  # the table's size when it was prepared
    checked_at: float


class PlannedForTableSize:
    """A statement prepared again, so planned again, each time ``table`` has doubled in size.

    PostgreSQL keeps a prepared statement's plan until the table's statistics change (an
    ANALYZE). A plan made while the table is new and small is right for it then and wrong once
    the table is large: the batch statement's eventId lookup hashes the whole event table,
    1.3 s a batch of 32 at 500,000 rows, where a plan made at that size probes the unique
    index in about 2 ms (docs/performance.md). On a new database that lasts until
    autovacuum's first ANALYZE, up to a minute under load, or for good where autovacuum is off.

    So at most once every ``check_every`` seconds the connection reads the table's size on disk
    (what the planner reads too, statistics or not); once it is twice the size the statement was
    prepared at, the statement is prepared anew. A plan is so never made for less than half the
    table it runs on, at the cost of one size query a second and of a new statement's first
    plans at each doubling. Each asyncpg connection keeps its own statement; one that failed is
    let go of, and the next batch prepares it again.
    """

    def __init__(
        self,
        statement: DriverStatement,
        table: str,
        *,
        check_every: float = 1.0,
    ) -> None:
        self.statement = statement
        self.table = table
        self.check_every = check_every
        self._prepared: weakref.WeakKeyDictionary[Any, _Prepared] = weakref.WeakKeyDictionary()

    async def fetch(self, driver: Any, parameters: Mapping[str, Any]) -> list[Any]:
        """The statement's rows, run on ``driver`` (an asyncpg connection) by its own plan."""
        sql = self.statement.sql
        try:
            prepared = await self._planned(driver)
            rows: list[Any] = await prepared.fetch(*self.statement.arguments(parameters))
        except _DRIVER_ERRORS as error:
            self._prepared.pop(driver, None)
            raise as_sqlalchemy_error(sql, error, invalidated=driver.is_closed()) from error
        return rows

    async def _planned(self, driver: Any) -> Any:
        kept = self._prepared.get(driver)
        now = time.monotonic()
        if kept is not None and now - kept.checked_at < self.check_every:
            return kept.statement
        size: int = await driver.fetchval(
            "SELECT pg_relation_size(CAST($1 AS regclass))", self.table
        )
        if kept is not None and size < 2 * max(kept.table_bytes, _PAGE_BYTES):
            kept.checked_at = now
            return kept.statement
        kept = _Prepared(await driver.prepare(self.statement.sql), size, now)
        self._prepared[driver] = kept
        return kept.statement


def as_sqlalchemy_error(sql: str, error: Exception, *, invalidated: bool) -> DBAPIError:
    """asyncpg's ``error`` as SQLAlchemy would have raised it from ``sql`` (parameters left out:
    a batch's are its rows)."""
    kind = next(kind for base, kind in _TRANSLATED if isinstance(error, base))
    return kind(sql, None, error, connection_invalidated=invalidated)
