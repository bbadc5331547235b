"""Forgetting a user while events keep coming: how long the erasure takes, and how long the
writers wait meanwhile, in rounds of a transaction each (as served) and in one transaction, in
the same run.

    python -m bench.forget [--events 7500,30000] [--backends sqlite,postgresql]

Each erasure runs in-process on a fresh database, through the service's own erasure
(``forget_user_everywhere``), while 8 writers record one visit at a time through the record
service (the path every door takes). The user has N events: two thirds searches, half of them
clicked by another user (those clicks are unlinked), and views. An erasure holds writers off
while its transaction runs: what a writer waits shows how long. Writes section ``forget`` of
docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlmodel import col

from app.auth.principal import Principal
from app.domain.events import EventDraft, EventKind
from app.services import accounts, privacy
from app.services.record import Client, record_events
from app.services.runtime import Runtime, build_runtime
from app.settings import Settings
from app.storage import erasure
from app.storage.database import open_database
from app.storage.migrate import upgrade_to_head
from app.storage.models import Event
from bench.common import fresh_database, write_section

SECRET = "bench-forget-secret"
START = datetime(2025, 1, 1, tzinfo=UTC)
CLIENT = Client(door="bench", user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0")
WRITERS = 8
SEED_BATCH = 500
QUIET_SECONDS = 0.5  # of writes before and after the erasure


@dataclass(frozen=True)
class Outcome:
    backend: str
    events: int
    mode: str
    erased: int
    seconds: float
    writes: int  # acknowledged while the erasure ran
    slowest_ms: float
    p99_ms: float
    quiet_p99_ms: float  # the writers' p99 before the erasure began


def user_history(count: int) -> Iterator[tuple[EventDraft, EventDraft | None]]:
    """The user's events, each with the other user's click on it (every other search)."""
    searches = count * 2 // 3
    for n in range(count):
        at = START + timedelta(seconds=7 * n)
        if n < searches:
            search = EventDraft(
                kind=EventKind.SEARCH,
                user_id="u",
                occurred_at=at,
                query=f"q{n % 97}",
                result_count=10,
                query_id=f"u{n}",
            )
            click = None
            if n % 2 == 0:
                click = EventDraft(
                    kind=EventKind.CLICK,
                    user_id="v",
                    occurred_at=at + timedelta(seconds=3),
                    query_id=f"u{n}",
                    document_id=f"d{n % 31}",
                    rank=n % 10,
                )
            yield search, click
        else:
            view = EventDraft(
                kind=EventKind.VIEW,
                user_id="u",
                occurred_at=at,
                target_id=str(uuid.UUID(int=n)),
                target_type="item",
            )
            yield view, None


async def seed(runtime: Runtime, principal: Principal, count: int) -> None:
    history = list(user_history(count))
    for start in range(0, len(history), SEED_BATCH):
        part = history[start : start + SEED_BATCH]
        drafts = [own for own, _ in part]
        await record_events(runtime=runtime, principal=principal, drafts=drafts, client=CLIENT)
        clicks = [click for _, click in part if click is not None]
        if clicks:
            await record_events(runtime=runtime, principal=principal, drafts=clicks, client=CLIENT)


async def writer(
    runtime: Runtime, principal: Principal, stop: asyncio.Event, waits: list[tuple[float, float]]
) -> None:
    """One visit at a time until stopped; each write's start and end, on the loop's clock."""
    loop = asyncio.get_running_loop()
    n = 0
    while not stop.is_set():
        visit = EventDraft(kind=EventKind.VISIT, user_id=f"w{n}", store="shop", url=f"/p/{n}")
        began = loop.time()
        await record_events(runtime=runtime, principal=principal, drafts=[visit], client=CLIENT)
        waits.append((began, loop.time()))
        n += 1


async def measure(backend: str, count: int, mode: str) -> Outcome:
    with fresh_database(backend) as url:
        settings = Settings(database_url=url, secret_key=SECRET, access_log=False)
        database = open_database(settings, pooled=False)
        try:
            await upgrade_to_head(database)
        finally:
            await database.dispose()
        runtime = build_runtime(settings, secret=SECRET)
        await runtime.start()
        try:
            created = await accounts.create_account(
                database=runtime.database, vault=runtime.vault, name="bench"
            )
            await accounts.create_engine(database=runtime.database, account="bench")
            principal = await runtime.authenticator.authenticate(f"Token {created.api_key}")
            await seed(runtime, principal, count)
            rounds_of = erasure.ERASE_CHUNK if mode == "rounds" else count + 1
            return await erase_under_writes(runtime, principal, backend, count, mode, rounds_of)
        finally:
            await runtime.stop()


async def erase_under_writes(
    runtime: Runtime, principal: Principal, backend: str, count: int, mode: str, rounds_of: int
) -> Outcome:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    waits: list[tuple[float, float]] = []
    writers = [asyncio.create_task(writer(runtime, principal, stop, waits)) for _ in range(WRITERS)]
    await asyncio.sleep(QUIET_SECONDS)
    began = loop.time()
    chunk, erasure.ERASE_CHUNK = erasure.ERASE_CHUNK, rounds_of
    try:
        erased = await privacy.forget_user_everywhere(database=runtime.database, user_id="u")
    finally:
        erasure.ERASE_CHUNK = chunk
    ended = loop.time()
    await asyncio.sleep(QUIET_SECONDS)
    stop.set()
    await asyncio.gather(*writers)
    await check_stored(runtime, writes=len(waits))
    during = [(end - start) * 1000 for start, end in waits if end >= began and start <= ended]
    quiet = [(end - start) * 1000 for start, end in waits if end < began]
    return Outcome(
        backend=backend,
        events=count,
        mode=mode,
        erased=erased,
        seconds=ended - began,
        writes=sum(1 for _, end in waits if began <= end <= ended),
        slowest_ms=max(during, default=0.0),
        p99_ms=percentile(during, 99),
        quiet_p99_ms=percentile(quiet, 99),
    )


async def check_stored(runtime: Runtime, *, writes: int) -> None:
    """Nothing of the user is left, and every acknowledged write is stored."""
    async with runtime.database.sessions() as session:
        left = await session.scalar(select(func.count()).where(col(Event.user_id) == "u"))
        visits = await session.scalar(select(func.count()).where(col(Event.kind) == "visit"))
    if left or visits != writes:
        raise SystemExit(f"{left} events of the user left; {visits} of {writes} writes stored")


def percentile(values: list[float], pct: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def table(outcomes: list[Outcome]) -> str:
    lines = [
        "| database | the user's events | erasure | events erased | seconds | writes acknowledged"
        " meanwhile | slowest write ms | p99 write ms | p99 write ms before |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for o in outcomes:
        mode = f"rounds of {erasure.ERASE_CHUNK:,}" if o.mode == "rounds" else "one transaction"
        lines.append(
            f"| {o.backend} | {o.events:,} | {mode} | {o.erased:,} | {o.seconds:.2f} |"
            f" {o.writes:,} | {o.slowest_ms:.0f} | {o.p99_ms:.0f} | {o.quiet_p99_ms:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", default="7500,30000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    outcomes = []
    for backend in args.backends.split(","):
        for count in (int(n) for n in args.events.split(",")):
            for mode in ("one transaction", "rounds"):
                outcome = asyncio.run(measure(backend, count, mode))
                print(table([outcome]).splitlines()[-1], file=sys.stderr, flush=True)
                outcomes.append(outcome)
    command = f"python -m bench.forget --events {args.events} --backends {args.backends}"
    markdown = f"## Forgetting a user while events come in\n\nCommand: `{command}`.\n\n"
    markdown += table(outcomes) + "\n"
    print(markdown)
    if not args.no_write:
        write_section("forget", markdown)


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"done in {time.monotonic() - started:.0f} s", file=sys.stderr)
