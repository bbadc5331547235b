"""Statements sent by asyncpg itself answer, and fail, as the same statements through SQLAlchemy."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError

from app.services.runtime import Runtime
from app.storage.asyncpg_statements import DriverStatement
from app.storage.outages import is_out_of_step, is_storage_down
from tests.integration.session_ended import end_session_unnoticed

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])


async def test_rows_and_named_parameters_in_any_order(runtime: Runtime) -> None:
    statement = DriverStatement(text("SELECT CAST(:b AS int) - CAST(:a AS int) AS d, :a * 10 AS t"))
    async with runtime.database.writes.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        [row] = await statement.fetch(driver, {"a": 2, "b": 7})
    assert (row["d"], row["t"]) == (5, 20)


ADD_ACCOUNT = "INSERT INTO account (name, created_at) VALUES ('a', 0) ON CONFLICT DO NOTHING"
FAILING = {
    # Each statement fails on the server with its own class of error.
    "unique": "INSERT INTO account (name, created_at) SELECT name, created_at FROM account",
    "foreign key": "INSERT INTO engine (account_id, hashid, created_at) VALUES (-1, 'h', 0)",
    "syntax": "SELEC 1",
    "data": "SELECT CAST('a' AS int)",
    "division": "SELECT 1 / (SELECT count(*) FROM account WHERE false)",
}


@pytest.mark.parametrize("statement", list(FAILING.values()), ids=list(FAILING))
async def test_a_failure_is_raised_as_sqlalchemy_raises_it(
    runtime: Runtime, statement: str
) -> None:
    async with runtime.database.writes.connect() as conn:
        await conn.execute(text(ADD_ACCOUNT))
        with pytest.raises(DBAPIError) as through_sqlalchemy:
            await conn.execute(text(statement))
    async with runtime.database.writes.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        with pytest.raises(DBAPIError) as direct:
            await DriverStatement(text(statement)).fetch(driver, {})

    assert type(direct.value) is type(through_sqlalchemy.value)
    # SQLAlchemy's ``orig`` is its adapter's error made from asyncpg's; here it is asyncpg's.
    assert type(direct.value.orig) is type(through_sqlalchemy.value.orig.__cause__)  # type: ignore[union-attr]
    assert direct.value.orig.sqlstate == through_sqlalchemy.value.orig.sqlstate  # type: ignore[union-attr]
    assert not is_storage_down(direct.value)
    assert not direct.value.connection_invalidated
    assert statement in str(direct.value)


async def test_a_unique_violation_is_an_integrity_error(runtime: Runtime) -> None:
    async with runtime.database.writes.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        await DriverStatement(text(ADD_ACCOUNT)).fetch(driver, {})
        with pytest.raises(IntegrityError) as raised:
            await DriverStatement(text(FAILING["unique"])).fetch(driver, {})
    assert raised.value.orig.sqlstate == "23505"  # type: ignore[union-attr]


async def test_a_connection_the_server_ended_is_storage_down(runtime: Runtime) -> None:
    async with runtime.database.writes.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        pid = (await DriverStatement(text("SELECT pg_backend_pid()")).fetch(driver, {}))[0][0]
        async with runtime.database.engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await asyncio.sleep(0.2)
        with pytest.raises(DBAPIError) as raised:
            await DriverStatement(text("SELECT 1")).fetch(driver, {})
        await conn.invalidate()
    assert is_storage_down(raised.value)
    assert raised.value.connection_invalidated


async def test_a_connection_out_of_step_with_its_ended_session_is_storage_down(
    runtime: Runtime,
) -> None:
    """asyncpg refused the statement with its own InternalClientError, which came out raw: the
    group commit took it for a fault of the batch (an internal error), not of the storage."""
    async with runtime.database.writes.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        end_session_unnoticed(driver)
        assert not driver.is_closed()
        with pytest.raises(InterfaceError) as raised:
            await DriverStatement(text("SELECT 1")).fetch(driver, {})
        await conn.invalidate()
    assert isinstance(raised.value.orig, asyncpg.InternalClientError)
    assert raised.value.connection_invalidated
    assert is_storage_down(raised.value)
    assert is_out_of_step(raised.value)
