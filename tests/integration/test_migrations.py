"""The migrations build exactly the tables the models describe, and can be undone and redone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, MetaData, String, inspect
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel

from app.settings import Settings
from app.storage import models  # noqa: F401 - registers the tables on the metadata
from app.storage.database import Database, open_database
from app.storage.migrate import alembic_config, is_at_head, upgrade_to_head

TABLES = {"account", "api_key", "engine", "event", "rollup", "rollup_hour", "rollup_day"}


@pytest.fixture
async def empty_database(empty_database_url: str) -> AsyncIterator[Database]:
    database = open_database(
        Settings(database_url=empty_database_url, secret_key="test"), pooled=False
    )
    try:
        yield database
    finally:
        await database.dispose()


async def differences(database: Database, metadata: MetaData) -> list[Any]:
    """What ``alembic revision --autogenerate`` would write, types included."""

    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with database.engine.connect() as connection:
        return await connection.run_sync(compare)


async def tables(database: Database) -> set[str]:
    async with database.engine.connect() as connection:
        names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    return set(names) - {"alembic_version"}


async def downgrade_to_base(database: Database) -> None:
    def downgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")

    async with database.engine.begin() as connection:
        await connection.run_sync(downgrade)


async def test_upgrade_builds_the_models_schema(empty_database: Database) -> None:
    assert await tables(empty_database) == set()
    assert not await is_at_head(empty_database)

    await upgrade_to_head(empty_database)

    assert await is_at_head(empty_database)
    assert await tables(empty_database) == TABLES
    assert await differences(empty_database, SQLModel.metadata) == []


async def test_upgrade_twice_is_a_no_op(empty_database: Database) -> None:
    await upgrade_to_head(empty_database)
    await upgrade_to_head(empty_database)
    assert await is_at_head(empty_database)
    assert await differences(empty_database, SQLModel.metadata) == []


async def test_downgrade_to_base_then_upgrade_again(empty_database: Database) -> None:
    await upgrade_to_head(empty_database)

    await downgrade_to_base(empty_database)
    assert await tables(empty_database) == set()
    assert not await is_at_head(empty_database)

    await upgrade_to_head(empty_database)
    assert await is_at_head(empty_database)
    assert await differences(empty_database, SQLModel.metadata) == []


class _Text16(TypeDecorator[str]):
    impl = String(16)
    cache_ok = True


async def test_comparison_sees_a_changed_column_type(empty_database: Database) -> None:
    """The comparison above is not blind: a TypeDecorator is compared through its impl."""
    await upgrade_to_head(empty_database)
    drifted = MetaData()
    for table in SQLModel.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["event"].c.occurred_at.type = _Text16()
    drifted.tables["event"].c.query.type = String(2048)

    changed = {
        (diff[0][2], diff[0][3])
        for diff in await differences(empty_database, drifted)
        if isinstance(diff, list) and diff[0][0] == "modify_type"
    }

    assert changed == {("event", "occurred_at"), ("event", "query")}
