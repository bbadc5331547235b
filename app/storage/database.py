"""The async engine and session factory, configured per backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from app.settings import Settings


@dataclass(frozen=True, slots=True)
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    async def dispose(self) -> None:
        await self.engine.dispose()


def open_database(settings: Settings, *, pooled: bool = True) -> Database:
    engine = create_engine(settings, pooled=pooled)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    return Database(engine=engine, sessions=sessions)


def create_engine(settings: Settings, *, pooled: bool = True) -> AsyncEngine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(settings)
    options: dict[str, Any] = {
        "pool_pre_ping": True,
        "connect_args": {
            "timeout": settings.db_connect_timeout_seconds,
            "server_settings": {"application_name": "searchstats"},
        },
    }
    if pooled:
        options |= {
            "pool_size": settings.db_pool_size,
            "max_overflow": settings.db_pool_size,
            "pool_timeout": settings.db_connect_timeout_seconds,
        }
    else:
        options["poolclass"] = NullPool
    return create_async_engine(url, **options)


def _sqlite_engine(settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url,
        connect_args={"timeout": settings.db_connect_timeout_seconds},
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
