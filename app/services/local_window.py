"""The moving window a worker keeps in its own memory: each subject's requests of the last window.

``limits``' in-memory storage keeps the same log, newest first: every admitted request is
inserted at the head of a list as long as the limit, and after every request, while requests
keep coming, it starts a task that walks every subject and hands the bisection of its log to a
thread. Under load that came to about 20 µs of a request's CPU, a sixth of a REST event's
(docs/performance.md). Here each log is a deque, oldest first: a request appends its time and
the times that left the window drop off the other end, both in constant time. The rule is the
library's moving window (a request is admitted when fewer than ``amount`` were admitted in the
last window, one at the window's very edge still counted); ``limits`` still parses the rates
and, with Redis, names the keys and keeps the shared counters.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from limits import RateLimitItem

# How often, at most, subjects idle for a whole window are forgotten.
SWEEP_SECONDS = 60.0


class LocalMovingWindow:
    """Moving-window counters of this worker, for the event loop's thread alone."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # Per key: when each request still in its window was admitted, and the window's length.
        self._logs: dict[_Key, tuple[deque[float], float]] = {}
        self._next_sweep = clock() + SWEEP_SECONDS

    def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Count one request, or refuse it (and count nothing) if the window is full."""
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        key = _key(item, identifiers)
        entry = self._logs.get(key)
        if entry is None:
            entry = self._logs[key] = (deque(), float(item.get_expiry()))
        admitted, window = entry
        _drop_before(admitted, now - window)
        if len(admitted) >= item.amount:
            return False
        admitted.append(now)
        return True

    def seconds_until_free(self, item: RateLimitItem, *identifiers: str) -> float:
        """How long until the window has room for one more request (0 if it has now)."""
        entry = self._logs.get(_key(item, identifiers))
        if entry is None:
            return 0.0
        admitted, window = entry
        now = self._clock()
        _drop_before(admitted, now - window)
        if len(admitted) < item.amount:
            return 0.0
        # Room comes when the request that brings the count under the limit leaves the window.
        return admitted[len(admitted) - item.amount] + window - now

    def __len__(self) -> int:
        """Subjects remembered."""
        return len(self._logs)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_SECONDS
        idle = [
            key
            for key, (admitted, window) in self._logs.items()
            if not admitted or admitted[-1] < now - window
        ]
        for key in idle:
            del self._logs[key]


_Key = tuple[int, int, tuple[str, ...]]


def _key(item: RateLimitItem, identifiers: tuple[str, ...]) -> _Key:
    # The rate's amount and window, then the identifiers: what ``item.key_for`` names, as a
    # tuple (the text key, escaped and joined, is for shared storages: 0.7 µs a request).
    return item.amount, item.get_expiry(), identifiers


def _drop_before(admitted: deque[float], start: float) -> None:
    """Forget the requests admitted before ``start`` (one admitted at ``start`` still counts)."""
    while admitted and admitted[0] < start:
        admitted.popleft()
