"""Apply the Alembic migrations in ``migrations/`` programmatically."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

import migrations
from app.storage.database import Database

SCRIPT_LOCATION = str(Path(migrations.__file__).parent)


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade_to_head(database: Database) -> None:
    async with database.engine.begin() as connection:
        await connection.run_sync(_upgrade)


async def is_at_head(database: Database) -> bool:
    async with database.engine.connect() as connection:
        return await connection.run_sync(_at_head)


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _at_head(connection: Connection) -> bool:
    current = set(MigrationContext.configure(connection).get_current_heads())
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    return current == heads
