"""A statement's error never carries what it was sent: user ids, queries and URLs stay out of the
log when an unexpected database error is logged with its exception."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.settings import Settings
from app.storage.database import open_database

SECRET = "user-4f1c-who-searched-for-something-private"


@pytest.mark.parametrize("pooled", [True, False])
async def test_a_failed_statement_does_not_repeat_its_parameters(
    settings: Settings, pooled: bool
) -> None:
    database = open_database(settings, pooled=pooled)
    try:
        async with database.engine.connect() as conn:
            with pytest.raises(DBAPIError) as failed:
                await conn.execute(
                    text("SELECT * FROM no_such_table WHERE user_id = :user"), {"user": SECRET}
                )
    finally:
        await database.dispose()
    assert "no_such_table" in str(failed.value)  # the statement is still named
    assert SECRET not in str(failed.value)
