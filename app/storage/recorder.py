"""Group commit: events from concurrent requests share one transaction.

A request is acknowledged only after the transaction holding its events committed. While one
batch commits, the next one gathers, so a commit's cost is shared by everything that arrived
meanwhile instead of being paid per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, IntegrityError

from app.errors import Unavailable
from app.storage.batch_commit import HeldConnection, store_batch
from app.storage.database import Database
from app.storage.outages import is_storage_down
from app.storage.writes import NewEvent, Written

log = logging.getLogger(__name__)
COMMIT_ATTEMPTS = 3
# PostgreSQL's deadlock_detected and serialization_failure: the transaction was rolled back.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})
# A batch far smaller than the one before it (under a quarter) is mostly requests that just missed
# that one, queued while it committed; the rest of their wave follows, sent as that batch's
# answers went out. Committed at once, such a batch costs a whole commit and holds the wave
# behind it: on PostgreSQL under load every other batch was of one or two events. It waits this
# long, once, for the wave (a lone request after a lone request never waits).
STRAGGLERS_SHARE = 4
STRAGGLERS_WAIT_SECONDS = 0.001


@dataclass(slots=True)
class _Submission:
    events: Sequence[NewEvent]
    done: asyncio.Future[list[Written]]


class Recorder:
    """Drains submitted events into batched transactions, ``flushers`` of them at a time."""

    def __init__(
        self,
        database: Database,
        *,
        max_batch: int,
        flushers: int,
        on_commit: Callable[[int, float], None] | None = None,
    ) -> None:
        self._database = database
        # One flusher writes its batches on a connection of its own.
        self._held = HeldConnection(database) if flushers == 1 else None
        self._max_batch = max_batch
        self._flushers = flushers
        # Told each committed batch's size and the seconds it took to write and commit (metrics).
        self._on_commit = on_commit
        self._queue: asyncio.Queue[_Submission | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0

    async def start(self) -> None:
        # The loop the submissions' futures belong to, looked up once (a lookup per request
        # is a system call: app/event_loop.py).
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._run(), name=f"recorder-{n}") for n in range(self._flushers)
        ]

    async def stop(self) -> None:
        """Commit everything already submitted, then stop."""
        for _ in self._tasks:
            self._queue.put_nowait(None)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._held is not None:
            await self._held.close()

    async def record(self, events: Sequence[NewEvent]) -> list[Written]:
        """Store the events atomically; returns once they are committed."""
        if not self._tasks or self._loop is None:
            raise Unavailable("the recorder is not running")
        submission = _Submission(events, self._loop.create_future())
        self._queue.put_nowait(submission)
        # A client hanging up cancels only this wait: the submission stays queued, its events
        # are committed with their batch all the same (a done future is skipped when results
        # are handed out).
        return await submission.done

    async def _run(self) -> None:
        previous = 0  # the size of the batch before
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            size, stopping = self._gather(batch, len(first.events))
            if not stopping and size * STRAGGLERS_SHARE < previous:
                await asyncio.sleep(STRAGGLERS_WAIT_SECONDS)
                size, stopping = self._gather(batch, size)
            previous = size
            await self._flush(batch)

    def _gather(self, batch: list[_Submission], size: int) -> tuple[int, bool]:
        """Add what is queued to the batch, up to its limit: its size in events, and whether
        the stop signal was met."""
        while size < self._max_batch and not self._queue.empty():
            more = self._queue.get_nowait()
            if more is None:
                self._queue.put_nowait(None)  # keep the stop signal for after this batch
                return size, True
            batch.append(more)
            size += len(more.events)
        return size, False

    async def _flush(self, batch: list[_Submission]) -> None:
        try:
            results = await self._commit([s.events for s in batch])
        except Exception as error:
            if len(batch) > 1 and not is_storage_down(error):
                # One bad submission must not fail the others: commit them one by one.
                for submission in batch:
                    await self._flush([submission])
                return
            failure = _as_client_error(error)
            for submission in batch:
                if not submission.done.done():
                    submission.done.set_exception(failure)
            return
        for submission, written in zip(batch, results, strict=True):
            if not submission.done.done():
                submission.done.set_result(written)

    async def _commit(self, groups: list[Sequence[NewEvent]]) -> list[list[Written]]:
        flat = [event for group in groups for event in group]
        started = time.perf_counter()
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                written = await store_batch(self._database, flat, held=self._held)
                break
            except DBAPIError as error:
                # PostgreSQL broke a deadlock with a concurrent batch, or one stored the same
                # eventId in a way no lookup could see: nothing was written, so try again.
                if attempt == COMMIT_ATTEMPTS or not _is_transient(error):
                    raise
        self.batches += 1
        if self._on_commit is not None:
            self._on_commit(len(flat), time.perf_counter() - started)
        results: list[list[Written]] = []
        start = 0
        for group in groups:
            results.append(written[start : start + len(group)])
            start += len(group)
        return results


def _is_transient(error: DBAPIError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None)
    return isinstance(error, IntegrityError) or sqlstate in TRANSIENT_SQLSTATES


def _as_client_error(error: Exception) -> Exception:
    if is_storage_down(error):
        log.warning("storage unavailable: %s", type(error).__name__)
        return Unavailable(retry_after=1)
    log.exception("write batch failed", exc_info=error)
    return error
