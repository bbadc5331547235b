"""The async engine and session factory, configured per backend."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from app.settings import Settings
from app.storage.outages import is_read_only, is_storage_down
from app.storage.sqlite_writer_lock import SqliteWriterLock, writer_lock_for

log = logging.getLogger(__name__)

# How long closing the database waits for the connections still in use to come back. Work whose
# caller hung up (``app.storage.outages.unless_stalled``) gives its connection back once its
# statement ends; the stats reads' deadline bounds that, and a shutdown should not wait longer.
RETURN_WAIT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    # The group commit's connections. On PostgreSQL their own small pool, where every statement
    # has a deadline (a write blocked behind a lock, or a server that stopped answering, fails
    # instead of hanging the batch); on SQLite the same engine, whose busy timeout bounds writes.
    writes: AsyncEngine
    # On a SQLite file, what the group commit's batches take, one at a time, across workers.
    writer_lock: SqliteWriterLock | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    async def replace_connections(self) -> None:
        """Close the connections the pools hold: new ones are opened as they are needed (those
        in use are not pooled again)."""
        await self.engine.dispose()
        if self.writes is not self.engine:
            await self.writes.dispose()

    async def dispose(self) -> None:
        """Close every connection: those still in use are waited for first (a pool disposed of
        under them would take them back and never close them: on SQLite a thread and a file
        handle each until the garbage collector found them)."""
        engines = (self.engine,) if self.writes is self.engine else (self.engine, self.writes)
        in_use = await _in_use_after(engines, RETURN_WAIT_SECONDS)
        if in_use:
            log.warning("closing the database with %d connection(s) still in use", in_use)
        await self.replace_connections()
        if self.writer_lock is not None:
            self.writer_lock.close()


async def _in_use_after(engines: tuple[AsyncEngine, ...], seconds: float) -> int:
    """How many of the engines' pooled connections are still checked out once they have all come
    back, or ``seconds`` have passed. Unpooled connections (``NullPool``) close as they come back:
    they are not counted."""
    counts: list[Callable[[], int]] = [
        counter
        for engine in engines
        if (counter := getattr(engine.sync_engine.pool, "checkedout", None)) is not None
    ]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    # Polled: the pool has nothing to await, and a checkin listener would run on every return.
    while (in_use := sum(count() for count in counts)) and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    return in_use


async def let_go(database: Database, conn: AsyncConnection, error: BaseException | None) -> None:
    """Give a connection back to its pool, or, after ``error``, a failure of the database itself
    (down, locked, full, read-only), close it for good: the pool would hand it back. After a
    write refused as read-only, the pools' other connections go too: a connection opened while
    the database was read-only refuses writes for its life (SQLite opens a file it may not
    write read-only; a PostgreSQL session keeps the read-only default it started with)."""
    if error is not None and (is_storage_down(error) or is_read_only(error)):
        with contextlib.suppress(Exception):  # already broken: it is being thrown away
            await conn.invalidate()
    with contextlib.suppress(Exception):
        await conn.close()
    if error is not None and is_read_only(error):
        await database.replace_connections()


# Connections of the write pool: one flusher writes at a time; one more for a connection being
# replaced after a failure.
WRITE_POOL_SIZE = 2


def open_database(settings: Settings, *, pooled: bool = True) -> Database:
    engine = create_engine(settings, pooled=pooled)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    writes = engine
    if engine.dialect.name != "sqlite":
        writes = create_engine(settings, pooled=pooled, pool_size=WRITE_POOL_SIZE, writes=True)
        return Database(engine=engine, sessions=sessions, writes=writes)
    lock = writer_lock_for(settings)
    return Database(engine=engine, sessions=sessions, writes=writes, writer_lock=lock)


def create_engine(
    settings: Settings,
    *,
    pooled: bool = True,
    pool_size: int | None = None,
    writes: bool = False,
) -> AsyncEngine:
    """An engine; with ``writes``, each PostgreSQL statement waits at most
    ``db_write_timeout_seconds`` for its answer (asyncpg's ``command_timeout``: past it the
    statement is cancelled in the server and ``TimeoutError`` raised), and connections
    autocommit."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _discarding_read_only_connections(_sqlite_engine(settings))
    connect_args: dict[str, Any] = {
        "timeout": settings.db_connect_timeout_seconds,
        "server_settings": {"application_name": "searchstats"},
    }
    options: dict[str, Any] = {
        "pool_pre_ping": True,
        "connect_args": connect_args,
        "hide_parameters": True,  # see _sqlite_engine
    }
    if writes:
        connect_args["command_timeout"] = settings.db_write_timeout_seconds
        # A batch is one statement, its own transaction (app/storage/batch_commit.py);
        # autocommit also makes the ping before each batch one round trip, not BEGIN, ping,
        # ROLLBACK. A batch written again statement by statement asks for its transaction.
        options["isolation_level"] = "AUTOCOMMIT"
    if pooled:
        size = pool_size or settings.db_pool_size
        options |= {
            "pool_size": size,
            "max_overflow": size,
            "pool_timeout": settings.db_connect_timeout_seconds,
        }
    else:
        options["poolclass"] = NullPool
    return _discarding_read_only_connections(create_async_engine(url, **options))


def _discarding_read_only_connections(engine: AsyncEngine) -> AsyncEngine:
    """A write refused as read-only is taken for a lost connection: that connection and the
    others the pool holds are replaced, so that writes come back with the database (a
    connection opened while it was read-only would refuse them until the process restarts)."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _read_only(context: ExceptionContext) -> None:
        if is_read_only(context.original_exception):
            context.is_disconnect = True

    return engine


def _sqlite_engine(settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url,
        connect_args={"timeout": settings.db_connect_timeout_seconds},
        # A statement's error names its statement but not what it was sent: user ids, queries
        # and URLs would otherwise reach the log with every unexpected error logged.
        hide_parameters=True,
    )
    synchronous = settings.sqlite_synchronous

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers run beside the single writer. FULL syncs the WAL at every commit, so an
        # acknowledged event survives a power loss, not only a process crash (NORMAL).
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(settings.db_connect_timeout_seconds * 1000)}")
        cursor.close()

    return engine
