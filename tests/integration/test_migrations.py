"""The migrations build exactly the tables the models describe, and can be undone and redone; a
schema ahead of this code (a newer version's) is never migrated down."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, MetaData, String, inspect, text
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel

from app.settings import Settings
from app.storage import models  # noqa: F401 - registers the tables on the metadata
from app.storage.database import Database, open_database
from app.storage.migrate import (
    SchemaAhead,
    SchemaState,
    alembic_config,
    schema_of,
    upgrade_to_head,
)
from tests.conftest import set_schema_revision

ROOT = Path(__file__).resolve().parents[2]  # where pyproject.toml configures the alembic command
TABLES = {"account", "api_key", "engine", "event", "rollup", "rollup_hour", "rollup_day"}
NEWER = "9999"  # a revision this code does not know: a newer version's


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


async def downgrade(database: Database, revision: str) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with database.engine.begin() as connection:
        await connection.run_sync(run)


async def state(database: Database) -> SchemaState:
    return (await schema_of(database)).state


async def test_upgrade_builds_the_models_schema(empty_database: Database) -> None:
    assert await tables(empty_database) == set()
    assert await state(empty_database) is SchemaState.PENDING

    await upgrade_to_head(empty_database)

    assert await state(empty_database) is SchemaState.OK
    assert await tables(empty_database) == TABLES
    assert await differences(empty_database, SQLModel.metadata) == []


async def test_upgrade_twice_is_a_no_op(empty_database: Database) -> None:
    await upgrade_to_head(empty_database)
    assert (await upgrade_to_head(empty_database)).state is SchemaState.OK
    assert await state(empty_database) is SchemaState.OK
    assert await differences(empty_database, SQLModel.metadata) == []


async def test_downgrade_to_base_then_upgrade_again(empty_database: Database) -> None:
    await upgrade_to_head(empty_database)

    await downgrade(empty_database, "base")
    assert await tables(empty_database) == set()
    assert await state(empty_database) is SchemaState.PENDING

    await upgrade_to_head(empty_database)
    assert await state(empty_database) is SchemaState.OK
    assert await differences(empty_database, SQLModel.metadata) == []


async def test_a_schema_one_migration_behind_is_upgraded(empty_database: Database) -> None:
    await upgrade_to_head(empty_database)
    await downgrade(empty_database, "-1")
    behind = await schema_of(empty_database)
    assert behind.state is SchemaState.PENDING
    assert behind.revisions != behind.heads

    assert (await upgrade_to_head(empty_database)) == behind
    assert await state(empty_database) is SchemaState.OK
    assert await tables(empty_database) == TABLES


async def test_a_schema_ahead_is_left_as_it_is_with_one_warning(
    empty_database_url: str, empty_database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Older code started on a database a newer version migrated (``serve`` during a rolling
    upgrade): nothing is migrated, up or down, and one line says why."""
    await upgrade_to_head(empty_database)
    await set_schema_revision(empty_database_url, NEWER)

    with caplog.at_level(logging.WARNING, logger="app.storage.migrate"):
        found = await upgrade_to_head(empty_database)

    assert found.state is SchemaState.AHEAD
    assert (await schema_of(empty_database)).revisions == (NEWER,)
    assert await tables(empty_database) == TABLES
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING
    assert warning.getMessage().startswith(
        f"the database's schema (revision {NEWER}) is newer than this version of searchstats "
        f"knows (head {', '.join(found.heads)}): not migrating it"
    )


async def test_migrate_refuses_a_schema_ahead(
    empty_database_url: str, empty_database: Database
) -> None:
    await upgrade_to_head(empty_database)
    await set_schema_revision(empty_database_url, NEWER)

    with pytest.raises(SchemaAhead) as refused:
        await upgrade_to_head(empty_database, refuse_newer=True)

    heads = ", ".join((await schema_of(empty_database)).heads)
    assert refused.value.message == (
        f"the database's schema (revision {NEWER}) is newer than this version of searchstats "
        f"knows (head {heads}): migrate with the newer version"
    )
    assert (await schema_of(empty_database)).revisions == (NEWER,)


async def _processes_waiting_for_a_lock(database: Database, count: int) -> None:
    for _ in range(600):
        async with database.engine.connect() as connection:
            waiting = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        if waiting == count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{waiting} processes wait for a lock, not {count}")


async def test_migrations_started_together_take_turns(
    backend: str, empty_database_url: str, empty_database: Database
) -> None:
    """Nodes started together (each ``serve`` migrates first) on a new database: all but one
    failed, on PostgreSQL 'duplicate key value violates unique constraint
    "pg_type_typname_nsp_index"', on SQLite 'table account already exists' (each read an empty
    schema: SQLite runs DDL outside a transaction unless one is begun). One migrates; the others
    wait for it, then find the schema at head. They are made to start together by a transaction
    that holds the first table the migrations create (PostgreSQL) or the file's write lock
    (SQLite); they are given longer than it to wait."""
    environment = os.environ | {
        "SEARCHSTATS_DATABASE_URL": empty_database_url,
        "SEARCHSTATS_SECRET_KEY": "test",
        "SEARCHSTATS_DB_CONNECT_TIMEOUT_SECONDS": "60",
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "app.cli", "migrate"]
    async with empty_database.engine.connect() as blocker:
        if backend == "postgresql":
            await blocker.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
        else:
            await blocker.exec_driver_sql("BEGIN IMMEDIATE")
        processes = [
            await asyncio.create_subprocess_exec(
                *command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            for _ in range(3)
        ]
        if backend == "postgresql":
            await _processes_waiting_for_a_lock(empty_database, 3)
        else:  # SQLite shows no one waiting: time to start, and to read or wait for the lock
            await asyncio.sleep(3)
        await blocker.rollback()
    outputs = [(await process.communicate())[0].decode() for process in processes]

    assert [process.returncode for process in processes] == [0, 0, 0], outputs
    said = sorted(output.strip().splitlines()[-1] for output in outputs)
    assert said == [
        "database is up to date",
        "database is up to date",
        "migrated an empty database to 0004",
    ]
    assert await state(empty_database) is SchemaState.OK


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


def alembic_command(url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """The ``alembic`` command, run from the checkout with the service's database setting."""
    environment = os.environ | {"SEARCHSTATS_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "alembic", *argv],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_alembic_command_migrates_the_services_database(
    empty_database_url: str, empty_database: Database
) -> None:
    """What a developer writing a migration runs, and the way back down: it was a KeyError
    ('url'), the command naming no database of its own."""
    upgraded = alembic_command(empty_database_url, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    assert await state(empty_database) is SchemaState.OK
    assert await tables(empty_database) == TABLES

    checked = alembic_command(empty_database_url, "check")
    assert checked.returncode == 0, checked.stderr
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr

    downgraded = alembic_command(empty_database_url, "downgrade", "base")
    assert downgraded.returncode == 0, downgraded.stderr
    assert await tables(empty_database) == set()
