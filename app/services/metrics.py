"""Prometheus metrics: what one worker counts, and how several workers add theirs up.

Each ``Metrics`` has its own registry, so that several apps in one process (tests) never collide.
With ``searchstats serve --workers N`` the CLI points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
folder before the workers start: every worker then writes its values there and ``/metrics``,
whichever worker answers, reports the sum over all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from app.storage.writes import NewEvent, Written

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Where a door notes the error codes it answered with, for the access log to count.
ERROR_CODES_KEY = "searchstats.error_codes"
SAMPLE_SECONDS = 5.0
# Seconds; from a cache hit to a request held up by a slow database.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
# The methods the service's routes answer. A client may send any token as its method (uvicorn's
# httptools takes some 35, h11 any): each other one is the label ``other``, so that a client
# cannot add a latency histogram per method it makes up.
ROUTED_METHODS = frozenset({"GET", "HEAD", "POST", "OPTIONS"})
# nginx's status for a request its client abandoned before the answer (gone mid-body): the
# access line says so, nobody receives it, and it is no error of the service's: no code counted.
CLIENT_CLOSED_REQUEST = 499
# The code of an error answered without a note from its door, by its HTTP status.
CODE_OF_STATUS = {
    400: "bad_params",
    401: "not_authenticated",
    403: "access_denied",
    404: "not_found",
    405: "bad_params",
    408: "timeout",
    413: "payload_too_large",
    429: "too_many_requests",
    503: "unavailable",
}


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_ENV) or None


class Metrics:
    """The service's counters, histograms and gauges, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.events = Counter(
            "searchstats_events_recorded",
            "Events newly stored (duplicates not counted), by type and door.",
            ["type", "door"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "searchstats_ingest_batch_events",
            "Events per group-commit transaction.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "searchstats_ingest_commit_seconds",
            "Time to write and commit one group-commit transaction.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.request_seconds = Histogram(
            "searchstats_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "searchstats_errors",
            "Errors answered, by the contract's error code.",
            ["code"],
            registry=registry,
        )
        self.websockets = Gauge(
            "searchstats_websocket_connections",
            "Open websocket connections (GraphQL subscriptions).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.subscribers = Gauge(
            "searchstats_websocket_subscribers",
            "Live broker subscriptions on the workers (liveStats watchers of one question share "
            "one).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        # Labelled children, looked up once: ``labels()`` checks and copies its arguments.
        self._latency: dict[tuple[str, str], Any] = {}
        self._event_counts: dict[tuple[str, str], Any] = {}
        self._sampler: asyncio.Task[None] | None = None
        self._subscriber_count: Callable[[], int] | None = None

    # ---- observations ------------------------------------------------------------------------

    def observe_batch(
        self, events: Sequence[NewEvent], written: Sequence[Written], seconds: float
    ) -> None:
        """A committed group-commit batch: its size, its time, and the events it newly stored,
        by type and door. Counted here, once a batch, not by each request once answered: a
        client that hung up still had its events committed."""
        self.batch_size.observe(len(events))
        self.commit_seconds.observe(seconds)
        self.count_events(
            (event.kind.value, event.door)
            for event, outcome in zip(events, written, strict=True)
            if not outcome.duplicate
        )

    def count_events(self, kinds_and_doors: Iterable[tuple[str, str]]) -> None:
        counts: dict[tuple[str, str], int] = {}  # collections.Counter costs more for one or two
        for labels in kinds_and_doors:
            counts[labels] = counts.get(labels, 0) + 1
        for labels, amount in counts.items():
            child = self._event_counts.get(labels)
            if child is None:
                child = self._event_counts[labels] = self.events.labels(*labels)
            child.inc(amount)

    def observe_request(self, route: str, method: str, seconds: float) -> None:
        if method not in ROUTED_METHODS:
            method = "other"
        child = self._latency.get((route, method))
        if child is None:
            child = self._latency[(route, method)] = self.request_seconds.labels(route, method)
        child.observe(seconds)

    def count_errors(self, codes: Iterable[str]) -> None:
        for code in codes:
            self.errors.labels(code).inc()

    # ---- subscribers, sampled ----------------------------------------------------------------

    def start(self, subscribers: Callable[[], int]) -> None:
        """Sample the subscriber count now and then (each worker sets its own share)."""
        if self._sampler is not None:
            return

        async def sample() -> None:
            while True:
                self.subscribers.set(subscribers())
                await asyncio.sleep(SAMPLE_SECONDS)

        self._subscriber_count = subscribers
        self._sampler = asyncio.create_task(sample(), name="metrics-sampler")
        folder = multiprocess_dir()
        if folder:
            forget_dead_workers(folder)

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        if multiprocess_dir():
            # This worker's live gauges leave the sum with it.
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def exposition(self) -> tuple[bytes, str]:
        """The text a Prometheus scrape reads, and its content type."""
        if self._subscriber_count is not None:
            self.subscribers.set(self._subscriber_count())
        if multiprocess_dir():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def forget_dead_workers(folder: str) -> None:
    """Take the live gauges of workers that died without stopping out of the sum.

    A worker that stops marks itself dead (``Metrics.stop``); one that was killed (and started
    again by uvicorn) cannot, and its last websocket and subscriber counts would stay in every
    scrape. Each worker, as it starts, marks dead those whose process is gone.
    """
    for path in Path(folder).glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), folder)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    return True


def note_error_code(scope: MutableMapping[str, Any], code: str) -> None:
    """Say which error code a response carries when its status does not tell (GraphQL's 200)."""
    scope.setdefault(ERROR_CODES_KEY, []).append(code)


def error_codes(scope: MutableMapping[str, Any], status: int) -> list[str]:
    """The error codes a finished response answered with: those noted, else its status's."""
    noted: list[str] = scope.get(ERROR_CODES_KEY, [])
    if noted:
        return noted
    if status < 400 or status == CLIENT_CLOSED_REQUEST:
        return []
    return [CODE_OF_STATUS.get(status, "internal_error")]
