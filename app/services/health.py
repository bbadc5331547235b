"""Readiness: the database answers, within a bound, takes writes, and its schema is not behind
this code."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from app.storage.database import Database
from app.storage.migrate import Schema, SchemaState, schema_of
from app.storage.outages import is_read_only, is_storage_down
from app.storage.recorder import Recorder, StorageFailure
from app.storage.write_probe import probe_write, refusal

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Readiness:
    ok: bool
    checks: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Checked:
    schema: Schema
    writes: str | None  # "ok", or why not; None when not asked (a schema behind the code)


class ReadinessProbe:
    """One worker's readiness check, answered within ``timeout`` seconds whatever the database
    does (a balancer's probe gives up after 1-5 s, and a probe left hanging tells it nothing).

    Probes arriving while a check is under way wait for that one, so a database that stopped
    answering holds one of the pool's connections for this, not one per probe. A check that
    outlives the probes goes on in the background until the connect timeout ends it (the
    write, twice that: see ``_writes``).

    The database must take writes (``app.storage.write_probe``): a write is rolled back at each
    check, and committed while the group commit's latest batch failed for a storage reason (a
    full disk, which a write rolled back cannot see); once one commits, the worker is ready
    again without waiting for a batch, which a worker out of the balancer would never get.

    A schema ahead of the code (a newer version migrated the database during a rolling
    upgrade) is ready: a release's migrations keep the previous release working. A worker logs
    it once, when it sees the schema move ahead while it runs (``serve`` said so already of a
    schema that was ahead when it started).
    """

    def __init__(
        self,
        database: Database,
        recorder: Recorder,
        *,
        timeout: float,
        connect_timeout: float,
    ) -> None:
        self._database = database
        self._recorder = recorder
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._check: asyncio.Task[_Checked] | None = None
        self._seen: SchemaState | None = None
        self._overcome: StorageFailure | None = None  # a batch's failure a write committed after

    async def __call__(self) -> Readiness:
        if self._check is None or self._check.done():
            self._check = asyncio.create_task(self._checked())
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
        checked = check.result()
        self._note(checked.schema)
        state = checked.schema.state
        checks = {"database": "ok", "migrations": state.value}
        if checked.writes is not None:
            checks["writes"] = checked.writes
        return Readiness(state is not SchemaState.PENDING and checked.writes == "ok", checks)

    async def stop(self) -> None:
        if self._check is not None and not self._check.done():
            self._check.cancel()
            await asyncio.wait({self._check})

    async def _checked(self) -> _Checked:
        # Bounded by the connect timeout: a pooled connection's ping has no deadline of its own.
        schema = await asyncio.wait_for(schema_of(self._database), self._connect_timeout)
        if schema.state is SchemaState.PENDING:
            return _Checked(schema, None)
        return _Checked(schema, await self._writes())

    async def _writes(self) -> str:
        failure = self._recorder.storage_failure
        commit = failure is not None and failure is not self._overcome
        try:
            # On SQLite the writer lock, then the busy timeout, are each bounded by the connect
            # timeout: the probe says which refused it (locked) before this ends it.
            await asyncio.wait_for(
                probe_write(self._database, commit=commit, seconds=self._connect_timeout),
                2 * self._connect_timeout,
            )
        except Exception as error:
            if not (is_storage_down(error) or is_read_only(error)):
                log.warning("readiness: the write probe failed: %r", error)  # not the database's
            return f"unavailable ({refusal(error)})"
        if commit:
            self._overcome = failure
        return "ok"

    def _note(self, schema: Schema) -> None:
        if schema.state is SchemaState.AHEAD and self._seen not in (None, SchemaState.AHEAD):
            log.warning(
                "%s: still ready, as a release's migrations keep the previous release working; "
                "restart this worker on the new version",
                schema.newer_than_code(),
            )
        self._seen = schema.state


def _retrieved(check: asyncio.Task[_Checked]) -> None:
    """Take a finished check's error, so that one no probe waited for is not reported as lost."""
    if not check.cancelled():
        check.exception()
