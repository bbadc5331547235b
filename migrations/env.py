"""Alembic environment: runs migrations on the async engine, or on a connection handed in."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

from app.settings import Settings
from app.storage import models  # noqa: F401 - registers the tables on the metadata
from app.storage.database import create_engine

config = context.config
target_metadata = SQLModel.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _settings() -> Settings:
    """The database the ``alembic`` command names, else the service's own (the checkout's
    pyproject.toml names none: SEARCHSTATS_DATABASE_URL, as for ``searchstats migrate``)."""
    named = config.get_section(config.config_ini_section, {}).get("sqlalchemy.url")
    return Settings(database_url=named) if named else Settings()


def run_offline() -> None:
    context.configure(
        url=_settings().database_url,
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(_settings(), pooled=False)
    async with engine.connect() as connection:
        await connection.run_sync(_configure)
    await engine.dispose()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    run_offline()
else:
    run_online()
