"""Bulk import and export of events, through the same recording path as every door.

Import reads documents (``app.domain.event_documents``) a batch at a time, checks each one by the
doors' rules, builds its row (``app.services.import_rows``) and hands batches to the doors' group
commit; ``eventId`` makes a second run store nothing new. A few batches are in flight at
once, so reading the file overlaps committing. Export reads stored events a chunk at a time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Row

from app.auth.principal import Principal
from app.domain.event_documents import read_document
from app.domain.events import EventKind, event_problems
from app.domain.plain_documents import plain_document
from app.errors import AccessDenied, BadParams, NotFound, SearchStatsError, Unavailable
from app.services.import_rows import draft_row, plain_row
from app.services.record import store_new_events
from app.services.runtime import Runtime
from app.storage import directory
from app.storage.bulk import refresh_statistics, stored_events
from app.storage.database import Database
from app.storage.directory import EngineRecord
from app.storage.outages import unavailable_when_down
from app.storage.writes import NewEvent, Written

OnError = Literal["stop", "skip"]
# What is wrong with a line (rejected, named by its number), not with the import.
REJECTED = (BadParams, AccessDenied, NotFound)
Checked = tuple[NewEvent, EngineRecord]  # a valid event's row and the engine it is bound to
IN_FLIGHT = 4  # batches committing while the next ones are read
# Lines a batch holds, each batch committed in its own transaction (a request's limit,
# MAX_BATCH, does not apply). Batches of 5,000 instead of 1,000 made a 200,000-event import a
# fifth faster on both databases: a batch's round trips and statements are paid less often.
BATCH_LINES = 5000
RETRIES = 5  # a database that is briefly unavailable (restart, failover)
ENGINES_REMEMBERED = 10_000  # the engines an import remembers (then forgotten, all at once)
# The namespace of the eventIds an export gives events stored without one.
EXPORTED_IDS = uuid.UUID("9b2f0c4e-5d1a-4f7e-8c3b-6a0e2d9f1b47")
# The planner's statistics are refreshed after the first ANALYZE_FIRST events stored, then
# whenever the import has grown by a quarter since the last refresh. Refreshed only every 100,000
# events, statistics taken at 10,000 made PostgreSQL plan the lookup of clicks' searches badly
# until the next refresh (100-290 ms a batch instead of 5-15: 9 s of a 200,000-event import's
# 24). ANALYZE reads a sample of fixed size, so a refresh costs about the same at any size.
ANALYZE_FIRST = 10_000
ANALYZE_GROWTH = 0.25


@dataclass
class ImportSummary:
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    seconds: float = 0.0
    stopped_at: int | None = None  # the line that stopped an ``--on-error stop`` import

    def line(self) -> str:
        rate = self.read / self.seconds if self.seconds else 0.0
        text = (
            f"read {self.read}, stored {self.stored}, duplicates {self.duplicates}, "
            f"rejected {self.rejected}, {self.seconds:.1f} s ({rate:,.0f} events/s)"
        )
        if self.stopped_at is not None:
            text += f"; stopped at line {self.stopped_at}, nothing after it was imported"
        return text


@dataclass
class _Importer:
    runtime: Runtime
    principal: Principal
    summary: ImportSummary = field(default_factory=ImportSummary)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(IN_FLIGHT))
    analyzed_at: int = 0  # events stored at the last refresh of the planner's statistics
    # The engines lines named, by hashid: the engine, or why a line may not name it (no such
    # engine, another account's), so that a file of another database's engines is not one
    # lookup a line. At most ENGINES_REMEMBERED: a file naming a new engine on every line
    # would otherwise keep them all.
    engines: dict[str | None, EngineRecord | SearchStatsError] = field(default_factory=dict)

    async def check(self, document: Any, now: datetime) -> Checked:
        """The line's row, by the doors' rules at ``now``; BadParams says what is wrong."""
        if isinstance(document, SearchStatsError):
            raise document
        plain = plain_document(document, now=now)
        if plain is not None:  # most lines: checked and built without a draft in between
            engine = await self._engine(plain.fields.get("engine"))
            return plain_row(plain, engine.id, now), engine
        imported = read_document(document)
        problems = event_problems(imported.draft, now=now)
        if problems:
            raise BadParams.of(problems)
        engine = await self._engine(imported.draft.engine)
        return draft_row(imported, engine, now), engine

    async def _engine(self, hashid: str | None) -> EngineRecord:
        """The engine exists and is the account's: a batch never fails on one event's engine."""
        engine = self.engines.get(hashid)
        if engine is None:
            try:
                engine = await self.runtime.engines.engine_for(self.principal, hashid)
            except REJECTED as refused:
                engine = refused
            if len(self.engines) >= ENGINES_REMEMBERED:
                self.engines.clear()
            self.engines[hashid] = engine
        if isinstance(engine, SearchStatsError):
            raise engine.with_traceback(None)  # raised once a line: no traceback piling up
        return engine

    async def submit(self, batch: list[Checked]) -> None:
        await self.slots.acquire()
        task = asyncio.create_task(self._store(batch))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.slots.release()

    async def refresh_statistics(self) -> None:
        if statistics_due(stored=self.summary.stored, analyzed_at=self.analyzed_at):
            self.analyzed_at = self.summary.stored
            await refresh_statistics(self.runtime.database)

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.gather(*self.tasks)

    async def _store(self, batch: list[Checked]) -> None:
        events = [event for event, _ in batch]
        engines = [engine for _, engine in batch]
        written = await self._record(events, engines)
        duplicates = sum(1 for outcome in written if outcome.duplicate)
        self.summary.duplicates += duplicates
        self.summary.stored += len(written) - duplicates

    async def _record(self, events: list[NewEvent], engines: list[EngineRecord]) -> list[Written]:
        for attempt in range(RETRIES):
            try:
                return await store_new_events(runtime=self.runtime, events=events, engines=engines)
            except Unavailable as error:
                if attempt == RETRIES - 1:
                    raise
                await asyncio.sleep(error.retry_after * (attempt + 1))
        raise AssertionError("unreachable")


def statistics_due(*, stored: int, analyzed_at: int) -> bool:
    """Whether the planner's statistics are to be refreshed, ``stored`` events into an import
    whose last refresh was at ``analyzed_at``."""
    return stored - analyzed_at >= max(ANALYZE_FIRST, ANALYZE_GROWTH * analyzed_at)


async def import_events(
    *,
    runtime: Runtime,
    principal: Principal,
    documents: Iterable[tuple[int, Any]],
    on_error: OnError,
    rejected: Callable[[int, str], None],
    batch_size: int | None = None,
    summary: ImportSummary | None = None,
) -> ImportSummary:
    """Record ``(line, document)`` pairs, ``batch_size`` lines a transaction (BATCH_LINES by
    default); a document may be the error met reading its line. ``summary``, if given, is the
    one kept up to date, also for an import that fails part-way.

    Each rejected line is told to ``rejected`` with its message; ``stop`` ends the import at the
    first, after committing the lines before it.
    """
    batch_size = batch_size or BATCH_LINES
    importer = _Importer(runtime, principal, summary or ImportSummary())
    summary = importer.summary
    started = time.perf_counter()
    batch: list[Checked] = []
    now = datetime.now(UTC)
    try:
        for line, document in documents:
            summary.read += 1
            try:
                batch.append(await importer.check(document, now))
            except REJECTED as error:
                summary.rejected += 1
                rejected(line, error.message)
                if on_error == "stop":
                    summary.stopped_at = line
                    break
                continue
            if len(batch) >= batch_size:
                await importer.submit(batch)
                batch = []
                now = datetime.now(UTC)
                await importer.refresh_statistics()
        if batch:
            await importer.submit(batch)
        await importer.drain()
        if importer.summary.stored:
            await refresh_statistics(runtime.database)  # stats questions plan well right after
    finally:
        for task in importer.tasks:
            task.cancel()
        summary.seconds = time.perf_counter() - started
    return summary


async def account_principal(database: Database, name: str | None) -> Principal:
    """The account an import or export acts as: the one named, else ``default``."""
    async with unavailable_when_down(), database.sessions() as session:
        account = await directory.account_by_name(session, name or "default")
    if account is None:
        raise NotFound(f"no account named {name or 'default'!r} (name one with --account)")
    return Principal(account_id=account.id, account_name=account.name)


# ---- export ----------------------------------------------------------------------------------


async def export_documents(
    *, runtime: Runtime, principal: Principal, start: datetime, end: datetime
) -> AsyncGenerator[dict[str, Any], None]:
    """The account's events that occurred in [start, end), as documents, in stored order."""
    engines = {
        engine.id: engine.hashid for engine in await runtime.engines.engines_for(principal, None)
    }
    if not engines:
        return
    async for rows in stored_events(
        runtime.database, engine_ids=sorted(engines), start=start, end=end
    ):
        for row in rows:
            yield stored_document(row, engines[row.engine_id])


def stored_document(row: Row[Any], hashid: str) -> dict[str, Any]:
    """A stored event as the document that imports it back."""
    kind = EventKind(row.kind)
    payload: dict[str, Any] = row.payload or {}
    fields: dict[str, Any] = {
        "engine": hashid,
        "eventId": row.event_id or exported_event_id(row, hashid),
        "occurredAt": row.occurred_at.astimezone(UTC).isoformat(),
        "sessionId": row.session_id,
        "userId": row.user_id,
        **_kind_fields(kind, row, payload),
        "device": row.device.upper(),
        "isBot": bool(row.is_bot),
    }
    return {kind.value: {key: value for key, value in fields.items() if value is not None}}


def exported_event_id(row: Row[Any], hashid: str) -> str:
    """The ``eventId`` an event stored without one leaves with.

    So that a file imported twice, or again after an import stopped, stores each event once, as
    for events that came with an id. Made from what names the stored row: the same at every
    export of this database, and, with the instant the row was received, unlike any other
    database's (row ids repeat across databases). Imported back into the database it came
    from, such an event is stored again: there it has no id to match.
    """
    received = row.received_at.replace(tzinfo=None).isoformat()
    return "exported-" + uuid.uuid5(EXPORTED_IDS, f"{hashid}/{row.id}/{received}").hex


def _kind_fields(kind: EventKind, row: Row[Any], payload: dict[str, Any]) -> dict[str, Any]:
    if kind is EventKind.VIEW:
        return {
            "targetId": row.document_id,
            "targetType": payload.get("targetType"),
            "referrer": payload.get("referrer"),
        }
    if kind is EventKind.SEARCH:
        names = ("scope", "dsoType", "configuration", "appliedFilters", "sort", "page")
        return {
            "query": row.query,
            "resultCount": row.result_count,
            "queryId": row.query_id,
            **{name: payload.get(name) for name in (*names, "clickedObject")},
        }
    if kind is EventKind.VISIT:
        return {
            "store": payload.get("store"),
            "url": payload.get("url"),
            "pageType": payload.get("pageType"),
            "dfid": row.document_id,
        }
    position = {
        "documentId": row.document_id,
        "rank": row.rank,
        "queryId": row.query_id,
        "contentSourceId": row.content_source_id,
        "page": row.page,
    }
    if kind is EventKind.CLICK:
        product = row.product_type.upper() if row.product_type else None
        return position | {"event": payload.get("event"), "productType": product}
    return position | {"score": row.score}
