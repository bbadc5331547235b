"""Group commit: events from concurrent requests share one transaction.

A request is acknowledged only after the transaction holding its events committed. While one
batch commits, the next one gathers, so a commit's cost is shared by everything that arrived
meanwhile instead of being paid per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, IntegrityError

from app.errors import Unavailable
from app.storage.batch_commit import HeldConnection, store_batch
from app.storage.database import Database
from app.storage.outages import is_out_of_step, is_storage_down
from app.storage.writes import NewEvent, Written

log = logging.getLogger(__name__)
COMMIT_ATTEMPTS = 3
# PostgreSQL's deadlock_detected and serialization_failure: the transaction was rolled back.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})
# A batch is sealed once it holds this many events: it goes as soon as the flusher is free, and
# what arrives after it gathers into the next one. Without the seal, the flusher (woken behind
# every request already runnable) took the whole wave of requests parsed meanwhile, every
# client waited on that one commit, and the event loop sat idle until it ended (a quarter of
# the time under load); sealed, the database commits the first part of a wave while the loop
# parses the rest, and their answers while the next commits. 32 events still share a commit's
# cost well: the batch's fixed part (its round trip, the commit) is about 1 ms.
SEAL_EVENTS = 32
# A batch far smaller than the one before it (under a quarter) is mostly requests that just missed
# that one, queued while it committed; the rest of their wave follows, sent as that batch's
# answers went out. Committed at once, such a batch costs a whole commit and holds the wave
# behind it: on PostgreSQL under load every other batch was of one or two events. It waits this
# long, once, for the wave (a lone request after a lone request never waits).
STRAGGLERS_SHARE = 4
STRAGGLERS_WAIT_SECONDS = 0.001


class StorageFailure:
    """A batch the database could not take (down, locked, full, read-only). Each failure is an
    object of its own, so that readiness tells a new one from one it saw the database overcome."""

    __slots__ = ()


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
        on_commit: Callable[[Sequence[NewEvent], Sequence[Written], float], None] | None = None,
    ) -> None:
        self._database = database
        # One flusher writes its batches on a connection of its own.
        self._held = HeldConnection(database) if flushers == 1 else None
        self._max_batch = max_batch
        self._flushers = flushers
        # Told each committed batch's events, their outcomes and the seconds it took to write and
        # commit (metrics).
        self._on_commit = on_commit
        self._seal_at = min(SEAL_EVENTS, max_batch)
        # Submissions not yet taken: sealed batches, oldest first, and the open one after them.
        self._sealed: deque[list[_Submission]] = deque()
        self._open: list[_Submission] = []
        self._open_events = 0
        self._submitted: asyncio.Event | None = None  # set when there is something to take
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        # Set when a batch fails for a storage reason, cleared when one commits: readiness
        # (app/services/health.py) is not ready meanwhile, until a write of its own commits.
        self.storage_failure: StorageFailure | None = None

    async def start(self) -> None:
        # The loop the submissions' futures belong to, looked up once (a lookup per request
        # is a system call: app/event_loop.py).
        self._loop = asyncio.get_running_loop()
        self._submitted = asyncio.Event()
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._run(), name=f"recorder-{n}") for n in range(self._flushers)
        ]

    async def stop(self) -> None:
        """Commit everything already submitted, then stop."""
        self._stopping = True
        if self._submitted is not None:
            self._submitted.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._held is not None:
            await self._held.close()

    async def record(self, events: Sequence[NewEvent]) -> list[Written]:
        """Store the events atomically; returns once they are committed."""
        if not self._tasks or self._stopping or self._loop is None or self._submitted is None:
            raise Unavailable("the recorder is not running")
        submission = _Submission(events, self._loop.create_future())
        self._open.append(submission)
        self._open_events += len(events)
        if self._open_events >= self._seal_at:
            self._sealed.append(self._open)
            self._open, self._open_events = [], 0
        self._submitted.set()
        # A client hanging up cancels only this wait: the submission stays queued, its events
        # are committed with their batch all the same (a done future is skipped when results
        # are handed out).
        return await submission.done

    async def _run(self) -> None:
        assert self._submitted is not None
        previous = 0  # the size of the batch before
        while True:
            if self._sealed:
                batch, previous = self._take_sealed()
            elif self._open:
                if not self._stopping and self._open_events * STRAGGLERS_SHARE < previous:
                    previous = 0  # once
                    await asyncio.sleep(STRAGGLERS_WAIT_SECONDS)
                    continue  # sealed meanwhile, or still open: taken next either way
                batch, previous = self._open, self._open_events
                self._open, self._open_events = [], 0
            elif self._stopping:
                return
            else:
                self._submitted.clear()
                await self._submitted.wait()
                continue
            await self._flush(batch)

    def _take_sealed(self) -> tuple[list[_Submission], int]:
        """The oldest sealed batch, and those after it that fit in the batch limit with it (more
        than one waits only when the flusher fell behind: they share a commit); their size in
        events."""
        batch = self._sealed.popleft()
        size = _events_in(batch)
        while self._sealed:
            more = _events_in(self._sealed[0])
            if size + more > self._max_batch:
                break
            batch += self._sealed.popleft()
            size += more
        return batch, size

    async def _flush(self, batch: list[_Submission]) -> None:
        try:
            results = await self._commit([s.events for s in batch])
        except Exception as error:
            if is_storage_down(error):
                self.storage_failure = StorageFailure()
                # What was submitted meanwhile would wait as long again in a batch of its own
                # (a database locked past its busy timeout, a write past its deadline): twice
                # the bound the settings give. It is refused with this batch; what comes next
                # tries the database again.
                batch += self._take_waiting()
            elif len(batch) > 1:
                # One bad submission must not fail the others: commit them one by one.
                for submission in batch:
                    await self._flush([submission])
                return
            failure = _as_client_error(error)
            for submission in batch:
                if not submission.done.done():
                    submission.done.set_exception(failure)
            return
        self.storage_failure = None
        for submission, written in zip(batch, results, strict=True):
            if not submission.done.done():
                submission.done.set_result(written)

    def _take_waiting(self) -> list[_Submission]:
        """Every submission not yet taken, sealed or open."""
        waiting = [submission for sealed in self._sealed for submission in sealed]
        waiting += self._open
        self._sealed.clear()
        self._open, self._open_events = [], 0
        return waiting

    async def _commit(self, groups: list[Sequence[NewEvent]]) -> list[list[Written]]:
        flat = [event for group in groups for event in group]
        started = time.perf_counter()
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                written = await store_batch(self._database, flat, held=self._held)
                break
            except DBAPIError as error:
                # PostgreSQL broke a deadlock with a concurrent batch, or one stored the same
                # eventId in a way no lookup could see, or the held connection was out of step
                # (its session ended since the last batch; the next attempt takes another):
                # nothing was written, so try again.
                if attempt == COMMIT_ATTEMPTS or not _is_transient(error):
                    raise
        self.batches += 1
        if self._on_commit is not None:
            self._on_commit(flat, written, time.perf_counter() - started)
        results: list[list[Written]] = []
        start = 0
        for group in groups:
            results.append(written[start : start + len(group)])
            start += len(group)
        return results


def _events_in(batch: list[_Submission]) -> int:
    return sum(len(submission.events) for submission in batch)


def _is_transient(error: DBAPIError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None)
    return (
        isinstance(error, IntegrityError)
        or sqlstate in TRANSIENT_SQLSTATES
        or is_out_of_step(error)
    )


def _as_client_error(error: Exception) -> Exception:
    if is_storage_down(error):
        log.warning("storage unavailable: %s", type(error).__name__)
        return Unavailable(retry_after=1)
    log.exception("write batch failed", exc_info=error)
    return error
