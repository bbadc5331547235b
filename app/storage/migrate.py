"""Apply the Alembic migrations in ``migrations/`` programmatically, and compare a database's
schema with the migrations this version of the code knows."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

import migrations
from app.errors import SearchStatsError
from app.storage.database import Database

SCRIPT_LOCATION = str(Path(migrations.__file__).parent)
VERSION_TABLE = "alembic_version"  # Alembic's default, where it keeps the database's revision
# The PostgreSQL advisory lock that migrations take in turn ("searchstats migrate"'s number).
MIGRATION_LOCK = 0x5EA5C457A75
log = logging.getLogger(__name__)


class SchemaState(StrEnum):
    """Where a database's schema stands against this code's migrations (as ``/readyz`` says)."""

    PENDING = "pending"  # behind: migrations of this code are not applied yet
    OK = "ok"  # at this code's head
    AHEAD = "ahead"  # a revision this code does not know: a newer version migrated it


@dataclass(frozen=True, slots=True)
class Schema:
    revisions: tuple[str, ...]  # the database's (none before the first migration)
    heads: tuple[str, ...]  # this code's

    @property
    def state(self) -> SchemaState:
        if set(self.revisions) == set(self.heads):
            return SchemaState.OK
        if set(self.revisions) - _known_revisions():
            return SchemaState.AHEAD
        return SchemaState.PENDING

    def newer_than_code(self) -> str:
        """One line saying so, for a schema ahead of this code."""
        return (
            f"the database's schema (revision {', '.join(self.revisions)}) is newer than this "
            f"version of searchstats knows (head {', '.join(self.heads)})"
        )


class SchemaAhead(SearchStatsError):
    """``searchstats migrate`` with an older version than the one that migrated the database."""


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade_to_head(database: Database, *, refuse_newer: bool = False) -> Schema:
    """Apply the pending migrations; returns the schema found before.

    A schema ahead of this code is left as it is (never migrated down): with ``refuse_newer``
    that is an error (``searchstats migrate``), else a warning, and the caller goes on with it,
    since a migration keeps the previous version working (docs/operations.md, Upgrades).
    """
    async with database.engine.begin() as connection:
        schema = await connection.run_sync(_upgrade)
    if schema.state is SchemaState.AHEAD:
        if refuse_newer:
            raise SchemaAhead(f"{schema.newer_than_code()}: migrate with the newer version")
        log.warning(
            "%s: not migrating it, using it as it is (a release's migrations keep the previous "
            "release working)",
            schema.newer_than_code(),
        )
    return schema


async def schema_of(database: Database) -> Schema:
    async with database.engine.connect() as connection:
        return await connection.run_sync(_schema)


def _upgrade(connection: Connection) -> Schema:
    if connection.dialect.name == "postgresql":
        # Nodes started together each migrate first: one at a time, each reading the revision
        # the one before it committed (the lock is held to the end of the migrations'
        # transaction), or all but one fail on the tables the first is creating.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    elif connection.dialect.name == "sqlite":
        # The same on SQLite: the write lock first, before the revision is read (its driver would
        # begin no transaction for DDL at all: each statement committed alone, and processes
        # started together on a new file each read an empty schema and created the same tables).
        # The migrations are then one transaction, as on PostgreSQL.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    schema = _schema(connection)
    if schema.state is SchemaState.PENDING:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return schema


def _schema(connection: Connection) -> Schema:
    # Read directly: Alembic's MigrationContext logs two lines each time, once per probe.
    revisions: list[str] = []
    if inspect(connection).has_table(VERSION_TABLE):
        revisions = list(
            connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
        )
    return Schema(revisions=tuple(sorted(revisions)), heads=_heads())


# The migration scripts are read once per process: a readiness probe compares with them often.
@cache
def _script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


@cache
def _heads() -> tuple[str, ...]:
    return tuple(sorted(_script_directory().get_heads()))


@cache
def _known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in _script_directory().walk_revisions())
