"""Fault tests' tools: a client that knows which events were acknowledged, and what was stored.

Each client thread sends ``recordEvents`` batches whose events all carry an ``eventId``, and
remembers for each batch whether it was acknowledged (200, no error). After the fault, the
database is read directly: acknowledged events must all be there, every batch fully or not at
all, and resending the rest with the same ids must store each event exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlmodel import col

from app.settings import Settings
from app.storage.database import open_database
from app.storage.models import Event, Rollup

RECORD_EVENTS = """
mutation($input: [EventInput!]!) { recordEvents(input: $input) { id duplicate } }"""
KINDS = ("search", "visit")


@dataclass
class Batch:
    ids: tuple[str, ...]
    acknowledged: bool = False
    statuses: list[int | None] = field(default_factory=list)


def batch_events(ids: tuple[str, ...]) -> list[dict[str, Any]]:
    occurred = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    events: list[dict[str, Any]] = []
    for n, event_id in enumerate(ids):
        kind = KINDS[n % 2]
        fields: dict[str, Any] = {"eventId": event_id, "occurredAt": occurred}
        if kind == "search":
            fields |= {"query": f"fault {n}", "resultCount": n}
        else:
            fields |= {"store": "fault-store", "url": f"/page/{n}"}
        events.append({kind: fields})
    return events


def send_batch(http: httpx.Client, key: str, batch: Batch) -> int | None:
    """POST the batch once; its status (None: no answer). Acknowledged only on a clean 200."""
    try:
        response = http.post(
            "/graphql",
            json={"query": RECORD_EVENTS, "variables": {"input": batch_events(batch.ids)}},
            headers={"Authorization": f"Token {key}"},
        )
    except httpx.HTTPError:
        batch.statuses.append(None)
        return None
    batch.statuses.append(response.status_code)
    if response.status_code == 200:
        body = response.json()
        results = (body.get("data") or {}).get("recordEvents")
        if not body.get("errors") and results and len(results) == len(batch.ids):
            batch.acknowledged = True
    return response.status_code


class IngestLoad:
    """``clients`` threads sending batches of ``size`` events until stopped (or, with
    ``stop_when_unanswered``, until the server stops answering)."""

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        clients: int = 12,
        size: int = 10,
        prefix: str = "f",
        stop_when_unanswered: bool = True,
    ) -> None:
        self.base_url, self.key, self.size, self.prefix = base_url, key, size, prefix
        self.stop_when_unanswered = stop_when_unanswered
        self.batches: list[Batch] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._counter = itertools.count()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> IngestLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    @property
    def acknowledged(self) -> int:
        with self._lock:
            return sum(len(b.ids) for b in self.batches if b.acknowledged)

    def wait_acknowledged(self, events: int, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while self.acknowledged < events:
            assert time.monotonic() < deadline, f"only {self.acknowledged} events acknowledged"
            time.sleep(0.02)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, trust_env=False, timeout=15) as http:
            while not self._stop.is_set():
                n = next(self._counter)
                batch = Batch(tuple(f"{self.prefix}-{n}-{i}" for i in range(self.size)))
                with self._lock:
                    self.batches.append(batch)
                status = send_batch(http, self.key, batch)
                if status is None and self.stop_when_unanswered:
                    return
                if status is not None and status != 200:
                    time.sleep(0.02)  # as a client honouring Retry-After would, briefly


@dataclass(frozen=True)
class Outcome:
    """What the database holds against what the clients were told."""

    sent: int
    acknowledged: int
    stored: int
    lost: int  # acknowledged but not stored
    partial_batches: int
    duplicates: int  # eventIds stored more than once
    stored_unacknowledged: int  # committed, but the answer never reached the client

    def line(self, label: str) -> str:
        return (
            f"{label}: sent {self.sent}, acknowledged {self.acknowledged}, stored {self.stored}, "
            f"stored but unacknowledged {self.stored_unacknowledged}, lost {self.lost}, "
            f"partial batches {self.partial_batches}, duplicates {self.duplicates}"
        )


def outcome(batches: list[Batch], stored: Counter[str]) -> Outcome:
    sent = sum(len(b.ids) for b in batches)
    acknowledged = [b for b in batches if b.acknowledged]
    partial = sum(1 for b in batches if 0 < sum(1 for i in b.ids if i in stored) < len(b.ids))
    return Outcome(
        sent=sent,
        acknowledged=sum(len(b.ids) for b in acknowledged),
        stored=sum(stored.values()),
        lost=sum(1 for b in acknowledged for i in b.ids if i not in stored),
        partial_batches=partial,
        duplicates=sum(1 for count in stored.values() if count > 1),
        stored_unacknowledged=sum(
            1 for b in batches if not b.acknowledged for i in b.ids if i in stored
        ),
    )


def resend_unacknowledged(base_url: str, key: str, batches: list[Batch]) -> int:
    """Send every unacknowledged batch again, as a retrying client would; how many were."""
    retried = [b for b in batches if not b.acknowledged]
    with httpx.Client(base_url=base_url, trust_env=False, timeout=30) as http:
        for batch in retried:
            assert send_batch(http, key, batch) == 200, batch.statuses
            assert batch.acknowledged
    return len(retried)


async def _stored(database_url: str) -> tuple[Counter[str], int, int]:
    database = open_database(Settings(database_url=database_url, secret_key="x"), pooled=False)
    try:
        async with database.engine.connect() as conn:
            ids = Counter(
                row[0] for row in await conn.execute(select(col(Event.event_id))) if row[0]
            )
            events = (
                await conn.execute(
                    select(func.count()).select_from(Event).where(col(Event.kind).in_(KINDS))
                )
            ).scalar_one()
            counted = (
                await conn.execute(
                    select(func.coalesce(func.sum(col(Rollup.count)), 0)).where(
                        col(Rollup.metric).in_(KINDS)
                    )
                )
            ).scalar()
        return ids, events, int(counted or 0)
    finally:
        await database.dispose()


def stored_event_ids(database_url: str) -> Counter[str]:
    """Rows per eventId, after checking the rollups count exactly the raw events (of the kinds
    the load sends)."""
    ids, events, counted = asyncio.run(_stored(database_url))
    assert counted == events, f"rollups count {counted} events, the table holds {events}"
    return ids


def sqlite_integrity(path: str) -> str:
    import sqlite3

    with sqlite3.connect(path) as connection:
        result: str = connection.execute("PRAGMA integrity_check").fetchone()[0]
    return result


async def _sql(database_url: str, statement: str) -> list[Any]:
    database = open_database(Settings(database_url=database_url, secret_key="x"), pooled=False)
    try:
        async with database.engine.begin() as conn:
            result = await conn.execute(text(statement))
            return list(result) if result.returns_rows else []
    finally:
        await database.dispose()


def sql(database_url: str, statement: str) -> list[Any]:
    return asyncio.run(_sql(database_url, statement))
