"""Closing the database lets the work still holding a connection give it back first.

A caller that hangs up mid-read (a websocket closed while its ``liveStats`` was computing, a
client gone during a stats question) leaves the read to unwind on its own: the connection comes
back once the statement it was running ends. Disposing of the engine before that left the
connection in a pool nobody held, never closed (on SQLite a thread and a file handle until the
garbage collector found it).
"""

from __future__ import annotations

import asyncio
import gc
import time
import warnings

from sqlalchemy import event, text

from app.settings import Settings
from app.storage.database import open_database
from app.storage.outages import unless_stalled

SLOW_STATEMENT = {
    # About a quarter of a second of work on each, without a lock or a sleep SQLite lacks.
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000)"
    " SELECT count(*) FROM c",
    "postgresql": "SELECT pg_sleep(0.25)",
}


async def test_disposing_waits_for_a_read_whose_caller_hung_up(
    settings: Settings, backend: str
) -> None:
    database = open_database(settings)
    returned: list[float] = []
    event.listen(database.engine.sync_engine.pool, "checkin", lambda *_: returned.append(1))
    started = asyncio.Event()

    async def read() -> None:
        async with database.engine.connect() as conn:
            started.set()
            await conn.execute(text(SLOW_STATEMENT[backend]))

    caller = asyncio.create_task(unless_stalled(read(), seconds=30))
    await started.wait()
    await asyncio.sleep(0.05)  # the statement is running
    caller.cancel()
    began = time.monotonic()
    await database.dispose()
    assert returned, "the read's connection was not given back before the engine was disposed"
    assert time.monotonic() - began < 5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
