"""One lookup between concurrent askers of the same thing.

A busy worker misses a cached answer with every request in flight at once: when a credential's
entry expires, and on a worker's first requests, before anything is cached. Each would ask the
database the same question, and a new worker would open a pool of connections to do it (64
requests stalled for 75 to 120 ms before engines were looked up once). Here the first asker's
lookup is the one everybody awaits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from app.storage.outages import unless_stalled

Value = TypeVar("Value")


class SingleFlight(Generic[Value]):
    def __init__(self, *, within: float | None = None) -> None:
        self._pending: dict[Hashable, asyncio.Future[Value]] = {}
        # Past this many seconds an asker stops waiting: Unavailable, as for a database that
        # stopped answering (``app.storage.outages.unless_stalled``); the lookup goes on.
        self._within = within

    async def run(
        self, key: Hashable, look_up: Callable[..., Awaitable[Value]], *arguments: Any
    ) -> Value:
        """``look_up(*arguments)``, or the one already running under ``key``. Its failure is
        every asker's; nothing is remembered once it is done."""
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(look_up(*arguments))
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._settled(key, done))
        shared = asyncio.shield(pending)  # one asker hanging up must not fail the others
        if self._within is None:
            return await shared
        return await unless_stalled(shared, self._within)

    def _settled(self, key: Hashable, done: asyncio.Future[Value]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]
        if not done.cancelled():
            done.exception()  # retrieved: a failure whose askers all hung up is not an error
