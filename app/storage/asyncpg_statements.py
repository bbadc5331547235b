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
connection asyncpg cannot use, ``DBAPIError`` for any other error of the server, each with
asyncpg's own error, and its SQLSTATE, as ``orig``; a connection the server closed marks it
``connection_invalidated``. So the write path tells a database that is down from a batch that is
wrong as it does for every other statement (``app.storage.outages``).
"""

from __future__ import annotations

from collections.abc import Mapping
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
    (asyncpg.PostgresError, DBAPIError),
)


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
            rows: list[Any] = await driver.fetch(self.sql, *[parameters[n] for n in self.names])
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise as_sqlalchemy_error(self.sql, error, invalidated=driver.is_closed()) from error
        return rows


def as_sqlalchemy_error(sql: str, error: Exception, *, invalidated: bool) -> DBAPIError:
    """asyncpg's ``error`` as SQLAlchemy would have raised it from ``sql`` (parameters left out:
    a batch's are its rows)."""
    kind = next(kind for base, kind in _TRANSLATED if isinstance(error, base))
    return kind(sql, None, error, connection_invalidated=invalidated)
