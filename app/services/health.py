"""Readiness: the database answers, within a bound, and its schema is not behind this code."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from app.storage.database import Database
from app.storage.migrate import Schema, SchemaState, schema_of

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Readiness:
    ok: bool
    checks: dict[str, str] = field(default_factory=dict)


class ReadinessProbe:
    """One worker's readiness check, answered within ``timeout`` seconds whatever the database
    does (a balancer's probe gives up after 1-5 s, and a probe left hanging tells it nothing).

    Probes arriving while a check is under way wait for that one, so a database that stopped
    answering holds one of the pool's connections for this, not one per probe. A check that
    outlives the probes goes on in the background until the connect timeout ends it.

    A schema ahead of the code (a newer version migrated the database during a rolling
    upgrade) is ready: a release's migrations keep the previous release working. A worker logs
    it once, when it sees the schema move ahead while it runs (``serve`` said so already of a
    schema that was ahead when it started).
    """

    def __init__(self, database: Database, *, timeout: float, connect_timeout: float) -> None:
        self._database = database
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._check: asyncio.Task[Schema] | None = None
        self._seen: SchemaState | None = None

    async def __call__(self) -> Readiness:
        if self._check is None or self._check.done():
            self._check = asyncio.create_task(self._schema())
            self._check.add_done_callback(_retrieved)
        check = self._check
        await asyncio.wait({check}, timeout=self._timeout)
        if not check.done():
            return Readiness(False, {"database": f"unavailable (no answer in {self._timeout:g} s)"})
        if check.cancelled():  # the worker is stopping
            return Readiness(False, {"database": "unavailable (stopping)"})
        error = check.exception()
        if error is not None:
            return Readiness(False, {"database": f"unavailable ({type(error).__name__})"})
        schema = check.result()
        self._note(schema)
        state = schema.state
        checks = {"database": "ok", "migrations": state.value}
        return Readiness(state is not SchemaState.PENDING, checks)

    async def stop(self) -> None:
        if self._check is not None and not self._check.done():
            self._check.cancel()
            await asyncio.wait({self._check})

    async def _schema(self) -> Schema:
        # Bounded by the connect timeout: a pooled connection's ping has no deadline of its own.
        return await asyncio.wait_for(schema_of(self._database), self._connect_timeout)

    def _note(self, schema: Schema) -> None:
        if schema.state is SchemaState.AHEAD and self._seen not in (None, SchemaState.AHEAD):
            log.warning(
                "%s: still ready, as a release's migrations keep the previous release working; "
                "restart this worker on the new version",
                schema.newer_than_code(),
            )
        self._seen = schema.state


def _retrieved(check: asyncio.Task[Schema]) -> None:
    """Take a finished check's error, so that one no probe waited for is not reported as lost."""
    if not check.cancelled():
        check.exception()
