"""Whether the database takes a write now, for readiness: a row written as it is, then rolled
back or committed.

Reading alone says nothing of it: in WAL mode SQLite answers reads while another process holds
the write lock, on a file it may not write and on a full disk. Rolled back, the write takes the
write lock and is refused by a read-only database, and leaves nothing, on disk or in the table;
committed, it is a real write (SQLite appends it to the log): the one way to see that a full
disk has room again. On PostgreSQL the probe reads whether the session is read-only (a standby,
``default_transaction_read_only``) instead of rolling a write back, which would wait for the
lock a migration holds on the row; committed, it writes the row.
"""

from __future__ import annotations

import contextlib
import sqlite3

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.storage.batch_sqlite import on_sqlite_thread
from app.storage.database import Database, let_go
from app.storage.migrate import VERSION_TABLE
from app.storage.outages import READ_ONLY_SQLSTATE, is_read_only
from app.storage.sqlite_writer_lock import SqliteWriterLock

# Alembic's one row: every migrated database has it, and nothing reads it while the service runs.
PROBE = f"UPDATE {VERSION_TABLE} SET version_num = version_num"
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL = 5, 6, 13
DISK_FULL_SQLSTATE = "53100"


class WriteRefused(Exception):
    """The session would refuse writes (PostgreSQL's ``transaction_read_only``)."""

    def __init__(self) -> None:
        super().__init__("read-only")
        self.sqlstate = READ_ONLY_SQLSTATE


async def probe_write(database: Database, *, commit: bool, seconds: float) -> None:
    """Raises what refused the write; ``seconds`` bounds a PostgreSQL statement.

    A connection the probe failed on for a storage reason is thrown away (``let_go``): the next
    probe opens a new one, which writes once the database does.
    """
    conn = await database.engine.connect()
    try:
        if database.is_sqlite:
            driver = (await conn.get_raw_connection()).driver_connection
            await on_sqlite_thread(driver, _probe_on_sqlite, database.writer_lock, commit)
        elif commit:
            await _commit_on_postgresql(conn, seconds)
        elif (await conn.execute(text("SHOW transaction_read_only"))).scalar_one() == "on":
            raise WriteRefused
    except BaseException as error:
        await let_go(database, conn, error)
        raise
    await conn.close()


def refusal(error: BaseException) -> str:
    """What refused a write, in a word where it is known (no path or statement: ``/readyz`` is
    public), else the error's type."""
    cause = getattr(error, "orig", None) or error
    code = getattr(cause, "sqlite_errorcode", 0) & 0xFF
    if is_read_only(cause):
        return "read-only"
    # The writer lock says it as SQLite does, on an error of its own making (no code).
    if code in (SQLITE_BUSY, SQLITE_LOCKED) or str(cause) == "database is locked":
        return "locked"
    if code == SQLITE_FULL or getattr(cause, "sqlstate", None) == DISK_FULL_SQLSTATE:
        return "full"
    return type(error).__name__


def _probe_on_sqlite(
    connection: sqlite3.Connection, lock: SqliteWriterLock | None, commit: bool
) -> None:
    # Through the writer lock, as a batch goes: the probe waits its turn behind the batches of
    # every worker instead of racing them on SQLite's busy back-off.
    with lock.held() if lock is not None else contextlib.nullcontext():
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(PROBE)
            if commit:
                connection.commit()
        finally:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # the error that got here is told
                    connection.rollback()


async def _commit_on_postgresql(conn: AsyncConnection, seconds: float) -> None:
    milliseconds = str(max(1, int(seconds * 1000)))
    await conn.execute(
        text("SELECT set_config('statement_timeout', :timeout, true)"), {"timeout": milliseconds}
    )
    await conn.execute(text(PROBE))
    await conn.commit()
