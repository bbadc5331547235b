"""SQLite's durability as configured on a live connection: WAL, and FULL sync by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import Settings
from app.storage.database import open_database

SYNCHRONOUS_LEVELS = {"NORMAL": 1, "FULL": 2}


async def pragmas(settings: Settings) -> tuple[int, str]:
    database = open_database(settings)
    try:
        async with database.engine.connect() as conn:
            synchronous = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar_one()
            journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
    finally:
        await database.dispose()
    return int(synchronous), str(journal)


async def test_default_is_wal_with_full_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEARCHSTATS_SQLITE_SYNCHRONOUS", raising=False)
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", secret_key="x")
    assert await pragmas(settings) == (SYNCHRONOUS_LEVELS["FULL"], "wal")


@pytest.mark.parametrize("level", ["NORMAL", "FULL"])
async def test_the_setting_reaches_every_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    monkeypatch.setenv("SEARCHSTATS_SQLITE_SYNCHRONOUS", level)
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", secret_key="x")
    assert await pragmas(settings) == (SYNCHRONOUS_LEVELS[level], "wal")
