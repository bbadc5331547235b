"""Live views: events as they are committed, and stats questions that follow them.

Both are async generators over the broker. ``LiveStats`` (one per worker) shares the work of a
``liveStats`` subscription among all that ask the same question: one broker subscription and at
most one stats computation per refresh, whatever the number of watchers. A watcher that does not
take what it is offered is dropped, never waited for.

A watcher may come with a ``Sink``: its reports are then handed to it by the feed as they are
published, in one pass over the watchers, instead of waking the watcher's own task once per
report; its generator then only ends (with the error that ended the watcher) or yields what the
sink declined.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Protocol

from app.auth.principal import Principal
from app.broker.base import Message, SlowSubscriber
from app.domain.events import EventKind
from app.domain.selection import selected
from app.domain.stats import StatsQuery
from app.errors import BadParams
from app.services.record import account_channel, change_channel, engine_channel
from app.services.runtime import Runtime
from app.services.stats import StatsReport, compute_stats

log = logging.getLogger(__name__)

# What a liveStats answer follows of each engine it names: its new events, and its events removed.
FOLLOWED_CHANNELS = (engine_channel, change_channel)

MIN_INTERVAL_MS, MAX_INTERVAL_MS, DEFAULT_INTERVAL_MS = 100, 60_000, 1000
# Reports a watcher may leave untaken while it is not pacing itself before it is dropped.
REPORT_BACKLOG = 8
# Watchers offered a report between two turns of the event loop: a thousand sends in one go
# would hold every request the worker is serving for as long as they take.
PUBLISH_CHUNK = 32


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """What subscribers learn about one newly stored event."""

    id: str
    engine: str
    kind: EventKind
    occurred_at: datetime
    query_id: str | None
    query: str | None
    document_id: str | None
    device: str
    is_bot: bool

    @classmethod
    def of(cls, message: Message) -> RecordedEvent:
        return cls(
            id=message["id"],
            engine=message["engine"],
            kind=EventKind(message["type"]),
            occurred_at=datetime.fromisoformat(message["occurredAt"]),
            query_id=message.get("queryId"),
            query=message.get("query"),
            document_id=message.get("documentId"),
            device=message.get("device") or "unknown",
            is_bot=bool(message.get("isBot")),
        )


async def recorded_events(
    *,
    runtime: Runtime,
    principal: Principal,
    engines: Sequence[str],
    kinds: Collection[EventKind] | None,
) -> AsyncGenerator[RecordedEvent, None]:
    """Events of the caller's engines (all of them when none is named), as they are committed;
    of these kinds, or all of them (``None``). No kind at all is refused, as no engine is: a
    form with no type ticked would receive every event."""
    wanted = {kind.value for kind in selected(kinds, field="types", noun="event type") or ()}
    records = await runtime.engines.engines_for(principal, engines or None)
    channels = [engine_channel(record.hashid) for record in records]
    async with runtime.broker.subscribe(channels) as messages:
        async for message in messages:
            if not wanted or message["type"] in wanted:
                yield RecordedEvent.of(message)


class Sent(Enum):
    """What a sink did with a report."""

    SENT = "sent"  # on its way, or dropped because its subscriber is gone
    WRITING = "writing"  # still being written: the client is not reading as fast
    DECLINED = "declined"  # not sent: the watcher's generator yields it instead


class Sink(Protocol):
    def send(self, report: StatsReport, written: Callable[[], None]) -> Sent:
        """Send at once, never waiting; ``written`` is called when a WRITING send is done."""
        ...


def interval_seconds(interval_ms: int) -> float:
    if not MIN_INTERVAL_MS <= interval_ms <= MAX_INTERVAL_MS:
        raise BadParams(f"intervalMs must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS}")
    return interval_ms / 1000


class LiveStats:
    """The hub: one feed per distinct question (account and StatsQuery) on this worker."""

    def __init__(self, runtime: Runtime, *, backlog: int = REPORT_BACKLOG) -> None:
        self._runtime = runtime
        self._backlog = backlog
        self._feeds: dict[tuple[int, StatsQuery], _Feed] = {}

    def __len__(self) -> int:
        return len(self._feeds)

    @property
    def watchers(self) -> int:
        return sum(feed.size for feed in self._feeds.values())

    async def watch(
        self,
        *,
        principal: Principal,
        query: StatsQuery,
        interval_ms: int,
        sink: Sink | None = None,
    ) -> AsyncGenerator[StatsReport, None]:
        """The answer now, then again after changes, at most once per ``interval_ms``.

        With a sink, the answers go to it and this yields only those it declines.
        """
        watcher = _Watcher(interval_seconds(interval_ms), self._backlog, sink)
        channels = await self._followed(principal, query)
        key = (principal.account_id, query)
        feed = self._feeds.get(key)
        if feed is None:
            feed = _Feed(self._runtime, principal, query, self._forget)
            self._feeds[key] = feed
        feed.join(watcher, channels)
        try:
            async for report in watcher.reports():
                yield report
        finally:
            watcher.close()
            await feed.leave(watcher)

    async def _followed(self, principal: Principal, query: StatsQuery) -> set[str]:
        """The channels that tell of a change to the answer. Without engines named, the
        account's: each answer counts every engine the account has when it is computed, those
        created since the question was first asked included."""
        if not query.engines:
            return {account_channel(principal.account_id)}
        # Access is checked here, before anything is shared.
        engines = await self._runtime.engines.engines_for(principal, query.engines)
        return {channel(engine.hashid) for engine in engines for channel in FOLLOWED_CHANNELS}

    def _forget(self, feed: _Feed) -> None:
        key = (feed.principal.account_id, feed.query)
        if self._feeds.get(key) is feed:
            del self._feeds[key]


class _Watcher:
    """One subscription: the latest report offered, taken at its own pace."""

    def __init__(self, interval: float, backlog: int, sink: Sink | None = None) -> None:
        self.interval = interval
        self._backlog = backlog
        self._latest: StatsReport | None = None
        self._error: Exception | None = None
        self._ready = asyncio.Event()
        self._pacing = False
        self._untaken = 0
        # With a sink: the report waiting for the interval to pass, or for a write to finish.
        self._sink = sink
        self._direct = sink is not None
        self._pending: StatsReport | None = None
        self._pending_at = 0.0
        self._allowed = float("-inf")  # when the next message may go
        self._writing = False
        self._timer: asyncio.TimerHandle | None = None
        # Set by the feed: whether it is about to publish a fresher report.
        self.refresh_due: Callable[[], bool] = lambda: False
        self.awaits_feed = False  # its pending report is left for the feed's next one
        self._loop = asyncio.get_running_loop()

    def offer(self, report: StatsReport, at: float) -> bool:
        """Replace what is pending; False (and the watcher fails) once it is too far behind.

        ``at`` is when the report was published: with a sink, the interval counts from it.
        """
        if self._direct:
            return self._offer_to_sink(report, at)
        if self._latest is not None and not self._pacing:
            # Ready to send but not taking: its client is not reading.
            self._untaken += 1
            if self._untaken > self._backlog:
                self.fail(SlowSubscriber())
                return False
        self._latest = report
        self._ready.set()
        return True

    def _offer_to_sink(self, report: StatsReport, at: float) -> bool:
        if self._error is not None:
            return False
        if self._writing or self._latest is not None:
            # The last message is still being written (or is not taken): its client is not reading.
            self._untaken += 1
            if self._untaken > self._backlog:
                self.fail(SlowSubscriber())
                return False
        self._pending, self._pending_at = report, at
        self._flush()
        return True

    def _flush(self) -> None:
        """Send the pending report through the sink, if the interval and the client allow."""
        report, sink = self._pending, self._sink
        if report is None or sink is None or self._writing:
            return
        if self._loop.time() < self._allowed:
            if self._timer is None:
                self._timer = self._loop.call_at(self._allowed, self._on_timer)
            return
        self._pending, self.awaits_feed = None, False
        self._allowed = max(self._pending_at, self._allowed) + self.interval
        if self._latest is not None:
            self._latest = report  # the generator has one to yield already: this one replaces it
            return
        outcome = sink.send(report, self._written)
        if outcome is Sent.WRITING:
            self._writing = True
        elif outcome is Sent.DECLINED:
            self._latest = report
            self._ready.set()
        else:
            self._untaken = 0

    def _written(self) -> None:
        self._writing = False
        self._untaken = 0
        self._flush()

    def _on_timer(self) -> None:
        self._timer = None
        if self._pending is not None and self.refresh_due():
            # Its interval began after the feed's last publication (it joined, or was served,
            # between two), so its pending report is already behind. Sending it now would put
            # this subscriber's messages out of step with the feed's for good, each one late by
            # up to an interval; the feed's next report is both fresher and on the beat.
            self.awaits_feed = True
            return
        self._flush()

    def close(self) -> None:
        """No more sending: the subscription is over."""
        self._sink = self._pending = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def fail(self, error: Exception) -> None:
        self._error, self._latest = error, None
        self.close()
        self._ready.set()

    async def reports(self) -> AsyncIterator[StatsReport]:
        loop = asyncio.get_running_loop()
        allowed = loop.time()  # when the next message may go
        while True:
            await self._ready.wait()
            if not self._direct and (wait := allowed - loop.time()) > 0:
                # One message per interval at most: reports offered meanwhile replace each other.
                # (With a sink the interval was kept before the report was declined.)
                self._pacing = True
                try:
                    await asyncio.sleep(wait)
                finally:
                    self._pacing = False
            self._ready.clear()
            if self._error is not None:
                raise self._error
            if self._latest is None:
                continue
            report, self._latest, self._untaken = self._latest, None, 0
            allowed = loop.time() + self.interval
            yield report


class _Feed:
    """One question followed for its watchers: a broker subscription and a refresh loop."""

    def __init__(
        self,
        runtime: Runtime,
        principal: Principal,
        query: StatsQuery,
        on_idle: Callable[[_Feed], None],
    ) -> None:
        self._runtime = runtime
        self.principal = principal
        self.query = query
        self._channels: frozenset[str] = frozenset()  # those of the engines it follows
        self._on_idle = on_idle
        self._watchers: set[_Watcher] = set()
        self._newcomers: set[_Watcher] = set()
        self._current: StatsReport | None = None
        self._dirty = True  # events may have been committed since _current was computed
        # A newcomer waits for its first report: refresh at once, cutting any pacing short.
        self._urgent = asyncio.Event()
        self._wake = asyncio.Event()
        self._following = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._computing = False

    @property
    def size(self) -> int:
        return len(self._watchers)

    def join(self, watcher: _Watcher, channels: Collection[str]) -> None:
        """Add a watcher of these channels (those of the engines named, else the account's)."""
        watcher.refresh_due = self._refresh_due
        self._watchers.add(watcher)
        if not self._channels.issuperset(channels):
            self._follow_too(channels)
        if self._current is not None and not self._dirty:
            # Nothing happened since it was computed.
            watcher.offer(self._current, asyncio.get_running_loop().time())
        else:
            self._newcomers.add(watcher)
            self._urgent.set()
            self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="live-stats-feed")
            self._task.add_done_callback(_log_failure)

    async def leave(self, watcher: _Watcher) -> None:
        task = self._remove(watcher)
        if task is not None:
            await asyncio.wait([task])

    def _remove(self, watcher: _Watcher) -> asyncio.Task[None] | None:
        """Forget the watcher; the last one out stops the feed (returned, to be awaited)."""
        self._watchers.discard(watcher)
        self._newcomers.discard(watcher)
        return None if self._watchers else self._stop()

    def _stop(self) -> asyncio.Task[None] | None:
        """Leave the hub and end the feed's task: the caller awaits it unless it is that task."""
        if self._stopped:
            return None
        self._stopped = True
        self._on_idle(self)
        task, self._task = self._task, None
        if task is None or task is asyncio.current_task():
            return None  # the refresh loop sees _stopped and returns
        task.cancel()
        return task

    def _fail(self, error: Exception) -> None:
        """Every watcher ends with the error; nobody waits on a dead feed."""
        for watcher in self._watchers:
            watcher.fail(error)
        self._watchers.clear()
        self._newcomers.clear()
        self._stop()

    async def _run(self) -> None:
        try:
            await self._refresh()
        except Exception as error:
            self._fail(error)
        finally:
            if self._follower is not None:
                self._follower.cancel()
                await asyncio.wait([self._follower])

    def _follow_too(self, channels: Collection[str]) -> None:
        """Follow these channels as well, in one broker subscription that replaces the last one.

        Until it is in place nothing is computed, and what was computed before is stale: an
        event committed meanwhile would refresh nothing.
        """
        self._channels |= frozenset(channels)
        self._dirty = True
        self._following.clear()
        previous = self._follower
        if previous is not None:
            previous.cancel()
        self._follower = asyncio.create_task(
            self._follow(sorted(self._channels), after=previous), name="live-stats-follow"
        )

    async def _follow(self, channels: list[str], after: asyncio.Task[None] | None) -> None:
        """Note that something changed; what exactly is read back from the database."""
        if after is not None:
            await asyncio.wait([after])  # the subscription it replaces has ended
        while True:
            try:
                async with self._runtime.broker.subscribe(channels) as messages:
                    self._following.set()
                    async for _ in messages:
                        self._changed()
            except SlowSubscriber:
                self._changed()  # some messages were missed: the database has them all

    def _changed(self) -> None:
        self._dirty = True
        self._wake.set()

    async def _refresh(self) -> None:
        loop = asyncio.get_running_loop()
        last = float("-inf")
        while not self._stopped:
            await self._wake.wait()
            await self._paced(last + self._pace() - loop.time())
            await self._following.wait()  # no event may slip between a computation and the follow
            self._wake.clear()
            self._urgent.clear()
            self._dirty = False
            newcomers, self._newcomers = self._newcomers, set()
            self._computing = True
            try:
                report = await compute_stats(
                    runtime=self._runtime, principal=self.principal, query=self.query
                )
            finally:
                self._computing = False
            last = loop.time()
            await self._publish(report, newcomers, last)

    async def _paced(self, delay: float) -> None:
        """Coalesce: whatever arrives while waiting is covered by one computation. The interval
        counts from the last publication, as the watchers' does. A newcomer cuts the wait short:
        its first answer comes at once, and the others' watchers keep their own pace."""
        if delay > 0 and not self._urgent.is_set():
            with suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._urgent.wait()

    def _refresh_due(self) -> bool:
        """Whether a report is being computed, or will be at the next beat."""
        return not self._stopped and (self._computing or self._dirty)

    def _pace(self) -> float:
        return min((w.interval for w in self._watchers), default=MAX_INTERVAL_MS / 1000)

    async def _publish(self, report: StatsReport, newcomers: set[_Watcher], at: float) -> None:
        changed = report != self._current
        self._current = report
        for rank, watcher in enumerate(tuple(self._watchers), start=1):
            if rank % PUBLISH_CHUNK == 0:
                await asyncio.sleep(0)  # let the requests waiting meanwhile go on
                if self._stopped:
                    return
            if watcher not in self._watchers:
                continue  # left while others were served
            if changed or watcher in newcomers or watcher.awaits_feed:
                # Joined during the computation: this answer is its first, any event since
                # then made the feed dirty and brings another.
                self._newcomers.discard(watcher)
                if not watcher.offer(report, at):
                    self._remove(watcher)
        if not self._newcomers:
            self._urgent.clear()
            if not self._dirty:
                self._wake.clear()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("live stats feed failed", exc_info=task.exception())
