"""Ingest throughput of every door against the yardsticks of bench/references.py, same run.

    python -m bench.ingest [--seconds 10] [--connections 64] [--backends sqlite,postgresql]
                           [--workers 1] [--scale-workers 2] [--prefill N [--prefill-only]]
                           [--no-write]

Starts every server as a real process, drives it with wrk on loopback, checks that the database
holds exactly the acknowledged events, writes the tables into docs/performance.md (section
``ingest``) and the plots into docs/img/. On PostgreSQL the REST visit door also runs with
``--scale-workers`` workers (0 skips it). ``--prefill N`` measures REST visit and recordEvents on
an empty database and on one already holding N events (loaded by bench.stats's loader), into a
section of its own (``ingest-prefill``); ``--prefill-only`` runs that comparison alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import orjson
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.auth.keys import KeyVault
from app.services import accounts
from app.settings import Settings
from app.storage.database import open_database
from app.storage.migrate import upgrade_to_head
from app.storage.models import Event
from bench import plots, stats
from bench.common import (
    ROOT,
    Server,
    WrkResult,
    free_port,
    fresh_database,
    mean_cpu,
    searchstats_server,
    stop,
    write_section,
    wrk_post,
)
from bench.references import naive_event

VISIT = {"store": "b0b0a7a5-5b3c-4d7e-8f9a-bb5a7e0f1c2d", "session_id": "s1", "url": "/shoes"}
WORKPLACE = {
    "type": "click",
    "query_id": "q1",
    "page": 1,
    "content_source_id": "cs1",
    "document_id": "doc-1",
    "rank": 0,
    "event": "api",
}
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"


def graphql_body(mutation: str, variables: dict[str, object]) -> dict[str, object]:
    return {"query": mutation, "variables": variables}


GRAPHQL_VISIT = graphql_body(
    "mutation($i: VisitInput!) { recordVisit(input: $i) { id } }",
    {"i": {"store": VISIT["store"], "sessionId": "s1", "url": "/shoes"}},
)
BATCH = 100
# Sent unchanged to our recordEvents and to the plain Strawberry yardstick.
GRAPHQL_BATCH = graphql_body(
    "mutation($i: [EventInput!]!) { recordEvents(input: $i) { id } }",
    {"i": [{"visit": {"store": VISIT["store"], "sessionId": "s1", "url": "/shoes"}}] * BATCH},
)
REST_VISIT = "REST visit"
REST_WORKPLACE = "REST workplace"
RECORD_VISIT = "GraphQL recordVisit"
RECORD_EVENTS = f"GraphQL recordEvents, {BATCH} per request"
BARE = "bare Starlette endpoint (same JSON parsing)"
NAIVE = "commit per request"
GROUPED = "group commit alone"
QUIET_VISIT = f"{REST_VISIT}, access log off"
PLAIN = f"plain Strawberry list input, {BATCH} per request"
# (label, path, body, credential scheme, events per request)
DOORS: tuple[tuple[str, str, object, str, int], ...] = (
    (REST_VISIT, "/api/v2/stats/visit", VISIT, "Token", 1),
    (REST_WORKPLACE, "/api/ws/v1/analytics/event", WORKPLACE, "Bearer", 1),
    (RECORD_VISIT, "/graphql", GRAPHQL_VISIT, "Token", 1),
    (RECORD_EVENTS, "/graphql", GRAPHQL_BATCH, "Token", BATCH),
)
PREFILL_DOORS = (REST_VISIT, RECORD_EVENTS)


@dataclass
class Row:
    door: str
    backend: str
    result: WrkResult
    stored: int | None = None
    events_per_request: int = 1
    workers: int = 1

    @property
    def label(self) -> str:
        return self.door if self.workers == 1 else f"{self.door} ({self.workers} workers)"

    @property
    def events_per_second(self) -> float:
        return self.result.requests_per_second * self.events_per_request

    @property
    def acknowledged(self) -> int:
        return (self.result.requests - self.result.non_2xx) * self.events_per_request


def reference(
    database_url: str,
    path: str,
    seconds: int,
    connections: int,
    body: object = VISIT,
) -> WrkResult:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.references",
            "--database-url",
            database_url,
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        _wait_listening(port)
        return wrk_post(
            f"http://127.0.0.1:{port}{path}",
            orjson.dumps(body).decode(),
            {"Content-Type": "application/json"},
            seconds=seconds,
            connections=connections,
            server_pid=process.pid,
        )
    finally:
        stop(process)


def reference_row(
    door: str, backend: str, path: str, body: object, per_request: int, args: argparse.Namespace
) -> Row:
    """A yardstick that writes, on a fresh database; its stored rows are counted afterwards."""
    with fresh_database(backend) as url:
        result = reference(url, path, args.seconds, args.connections, body)
        stored = asyncio.run(stored_reference_rows(url))
    return Row(door, backend, result, stored, per_request)


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/bare", json=VISIT, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("reference server did not start")


async def stored_events(database_url: str) -> int:
    database = open_database(Settings(database_url=database_url, secret_key="x"), pooled=False)
    try:
        async with database.sessions() as session:
            return int(
                (await session.execute(select(func.count()).select_from(Event))).scalar_one()
            )
    finally:
        await database.dispose()


async def stored_reference_rows(database_url: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(naive_event))).scalar_one()
            )
    finally:
        await engine.dispose()


def measure_door(server: Server, door: str, args: argparse.Namespace) -> tuple[WrkResult, int]:
    _label, path, body, scheme, per_request = next(d for d in DOORS if d[0] == door)
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"{scheme} {server.api_key}",
        "User-Agent": BROWSER,
    }
    result = wrk_post(
        server.url + path,
        orjson.dumps(body).decode(),
        headers,
        seconds=args.seconds,
        connections=args.connections,
        server_pid=server.process.pid,
    )
    if result.errors:
        print(f"{door}: {result.errors} socket errors", file=sys.stderr, flush=True)
    return result, per_request


def real_doors(
    backend: str, args: argparse.Namespace, *, workers: int, doors: tuple[str, ...]
) -> list[Row]:
    """Each door on its own fresh database and server."""
    return [door_row(door, door, backend, args, workers=workers) for door in doors]


def door_row(
    label: str,
    door: str,
    backend: str,
    args: argparse.Namespace,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
) -> Row:
    """One door on a fresh database and server (``env``: its settings beyond the defaults)."""
    with (
        fresh_database(backend) as url,
        searchstats_server(url, workers=workers, env=env) as server,
    ):
        result, per_request = measure_door(server, door, args)
        stop(server.process)
        stored = asyncio.run(stored_events(url))
    return Row(label, backend, result, stored, per_request, workers)


async def prefill(url: str, size: int) -> str:
    """Migrate, make an account and its engine, load ``size`` events; returns the API key."""
    database = open_database(Settings(database_url=url, secret_key=stats.SECRET), pooled=False)
    try:
        await upgrade_to_head(database)
        created = await accounts.create_account(
            database=database, vault=KeyVault(stats.SECRET), name="bench"
        )
        await accounts.create_engine(database=database, account="bench")
        if size:
            await stats.load(database, size)
        # Start from a settled database: the load's WAL written back, the table vacuumed.
        async with database.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            if database.engine.dialect.name == "sqlite":
                await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            else:
                await conn.execute(text("VACUUM (ANALYZE) event"))
                await conn.execute(text("CHECKPOINT"))
    finally:
        await database.dispose()
    return created.api_key


@contextmanager
def _timed(what: str) -> Iterator[None]:
    began = time.perf_counter()
    yield
    print(f"{what}: {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)


def prefilled_doors(backend: str, args: argparse.Namespace) -> tuple[list[Row], list[Row]]:
    """PREFILL_DOORS on an empty database and on one of ``args.prefill`` events.

    Both servers run side by side and are measured in turn, empty then full, then full then
    empty (``--prefill-rounds``), so that the load of a shared machine weighs on both alike.
    """
    sizes = (0, args.prefill)
    with fresh_database(backend) as empty_url, fresh_database(backend) as full_url:
        urls = dict(zip(sizes, (empty_url, full_url), strict=True))
        keys = {}
        for size, url in urls.items():
            with _timed(f"{backend}: loaded {size:,} events"):
                keys[size] = asyncio.run(prefill(url, size))
        with (
            searchstats_server(empty_url, api_key=keys[0]) as empty,
            searchstats_server(full_url, api_key=keys[args.prefill]) as full,
        ):
            servers = dict(zip(sizes, (empty, full), strict=True))
            before = dict(zip(sizes, sizes, strict=True))
            rows: dict[int, list[Row]] = {size: [] for size in sizes}
            for door in PREFILL_DOORS:
                results: dict[int, list[WrkResult]] = {size: [] for size in sizes}
                per_request = 1
                for round_ in range(args.prefill_rounds):
                    for size in sizes if round_ % 2 == 0 else sizes[::-1]:
                        server = servers[size]
                        result, per_request = measure_door(server, door, args)
                        results[size].append(result)
                time.sleep(0.5)  # let the last group commits land before counting
                for size in sizes:
                    after = asyncio.run(stored_events(urls[size]))
                    combined = _combine(results[size])
                    rows[size].append(
                        Row(door, backend, combined, after - before[size], per_request)
                    )
                    before[size] = after
    return rows[0], rows[args.prefill]


def _combine(results: list[WrkResult]) -> WrkResult:
    """Rounds of one measurement: mean throughput, median percentiles, summed counts."""
    return WrkResult(
        requests_per_second=statistics.fmean(r.requests_per_second for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        requests=sum(r.requests for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        errors=sum(r.errors for r in results),
        cpu=mean_cpu([r.cpu for r in results]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--workers", type=int, default=1, help="workers of every door")
    parser.add_argument(
        "--scale-workers",
        type=int,
        default=2,
        help="also run REST visit with this many workers (0: skip)",
    )
    parser.add_argument(
        "--prefill",
        type=int,
        default=0,
        help="also measure REST visit and recordEvents over this many events, against empty",
    )
    parser.add_argument("--prefill-only", action="store_true", help="only the --prefill comparison")
    parser.add_argument(
        "--prefill-rounds",
        type=int,
        default=2,
        help="measurements of each door on each database, alternating (--prefill)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    backends = args.backends.split(",")
    if args.prefill_only and not args.prefill:
        parser.error("--prefill-only needs --prefill N")

    if not args.prefill_only:
        rows, bare_runs = _measure_doors(backends, args)
        markdown = _doors_section(rows, bare_runs, backends, args)
        print(markdown, flush=True)
        if not args.no_write:
            write_section("ingest", "## Ingest\n\n" + markdown)
            plots.plot_sections()
    if args.prefill:
        prefilled = {backend: prefilled_doors(backend, args) for backend in backends}
        markdown = _prefill_section(prefilled, args)
        print(markdown)
        if not args.no_write:
            write_section(
                "ingest-prefill",
                f"### Ingest into an empty database and one of {args.prefill:,} events\n\n"
                + markdown,
            )


def _measure_doors(
    backends: list[str], args: argparse.Namespace
) -> tuple[list[Row], tuple[float, float]]:
    """The bare endpoint, then per database: the yardsticks and every door; then the bare
    endpoint again, its row the mean of both. Also each run's requests/s of the bare endpoint."""
    first = reference("sqlite+aiosqlite://", "/bare", args.seconds, args.connections)
    rows = [Row(BARE, "none", first)]
    for backend in backends:
        rows.append(reference_row(NAIVE, backend, "/naive", VISIT, 1, args))
        rows.append(reference_row(GROUPED, backend, "/grouped", VISIT, 1, args))
        rows += real_doors(backend, args, workers=args.workers, doors=tuple(d[0] for d in DOORS))
        # What the line per request costs, end to end (docs/operations.md, Logs).
        quiet = {"SEARCHSTATS_ACCESS_LOG": "false"}
        rows.append(door_row(QUIET_VISIT, REST_VISIT, backend, args, env=quiet))
        rows.append(reference_row(PLAIN, backend, "/graphql", GRAPHQL_BATCH, BATCH, args))
        if args.scale_workers > 1:
            scaled = args.scale_workers
            rows += real_doors(backend, args, workers=scaled, doors=(REST_VISIT,))
    # The HTTP limit drifts with the machine over a run (by a quarter between runs, seen on a
    # virtual machine): measured at both ends, every door is compared with what it was meanwhile.
    last = reference("sqlite+aiosqlite://", "/bare", args.seconds, args.connections)
    rows[0] = Row(BARE, "none", mean_of(first, last))
    return rows, (first.requests_per_second, last.requests_per_second)


def mean_of(first: WrkResult, last: WrkResult) -> WrkResult:
    """Two runs of one server as one: their mean rate and latencies, their counts added."""
    return WrkResult(
        requests_per_second=(first.requests_per_second + last.requests_per_second) / 2,
        p50_ms=(first.p50_ms + last.p50_ms) / 2,
        p99_ms=(first.p99_ms + last.p99_ms) / 2,
        requests=first.requests + last.requests,
        non_2xx=first.non_2xx + last.non_2xx,
        errors=first.errors + last.errors,
        cpu=mean_cpu([first.cpu, last.cpu]),
    )


def _doors_section(
    rows: list[Row], bare_runs: tuple[float, float], backends: list[str], args: argparse.Namespace
) -> str:
    return "\n".join(
        [
            f"Command: `{_command(args)}` (wrk, one thread, {args.connections} connections, "
            f"loopback, {args.seconds} s each; each server one uvicorn worker unless noted). "
            "The yardsticks (bench/references.py) run in the same session: a bare Starlette "
            "endpoint that parses the same JSON body (the HTTP limit); one row inserted and "
            "committed per request (the naive design); the same row committed with those of "
            "concurrent requests, one transaction at a time, and nothing else: no credential, "
            "validation, rollups, log or metrics (the group-commit design alone: the ceiling of "
            "the doors built on it, on this machine); a plain Strawberry schema taking the "
            f"same {BATCH}-event `recordEvents` body as a typed list input, with its parser "
            "and validation caches, one `executemany` and one commit per request. REST visit "
            "runs once more with `SEARCHSTATS_ACCESS_LOG=false` (no line per request). The bare "
            "endpoint is measured first and again last; its row is the mean of the two "
            f"({bare_runs[0]:,.0f} and {bare_runs[1]:,.0f} requests/s), and every ratio to it is "
            "to that mean.",
            "",
            _main_table(rows),
            "",
            "![Ingest throughput per door and database](img/ingest-throughput.png)",
            "![Ingest latency per door and database](img/ingest-latency.png)",
            "",
            "Against the targets of the performance issue:",
            "",
            _targets_table(rows, backends, args),
            "",
            f"Where the machine's {os.cpu_count()} cores went while wrk drove each door (cores "
            "busy on average, from /proc: the server's processes, SQLite's work included; "
            "every PostgreSQL process; wrk):",
            "",
            _cores_table(rows),
        ]
    )


def _cores_table(rows: list[Row]) -> str:
    lines = [
        "| door | database | server | PostgreSQL | wrk | in all |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        cpu = row.result.cpu
        if cpu is not None:
            lines.append(
                f"| {row.label} | {row.backend} | {cpu.server:.2f} | {cpu.database:.2f} "
                f"| {cpu.load:.2f} | {cpu.total:.2f} |"
            )
    return "\n".join(lines)


def _command(args: argparse.Namespace) -> str:
    command = (
        f"python -m bench.ingest --seconds {args.seconds} --connections {args.connections} "
        f"--backends {args.backends}"
    )
    if args.workers != 1:
        command += f" --workers {args.workers}"
    if args.scale_workers != 2:
        command += f" --scale-workers {args.scale_workers}"
    if args.prefill:
        command += f" --prefill {args.prefill}"
    if args.prefill_only:
        command += " --prefill-only"
    if args.prefill and args.prefill_rounds != 2:
        command += f" --prefill-rounds {args.prefill_rounds}"
    return command


def _main_table(rows: list[Row]) -> str:
    bare = rows[0].result.requests_per_second
    naive = {row.backend: row.result.requests_per_second for row in rows if row.door == NAIVE}
    lines = [
        "| door | database | requests/s | events/s | p50 ms | p99 ms | requests vs bare "
        "| events vs commit-per-request | acknowledged events | stored events |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        result = row.result
        versus_naive = naive.get(row.backend)
        lines.append(
            f"| {row.label} | {row.backend} | {result.requests_per_second:,.0f} "
            f"| {row.events_per_second:,.0f} | {result.p50_ms:.1f} | {result.p99_ms:.1f} "
            f"| {_ratio(result.requests_per_second, bare)} "
            f"| {_ratio(row.events_per_second, versus_naive, 1)} "
            f"| {row.acknowledged:,} | {'—' if row.stored is None else f'{row.stored:,}'} |"
        )
    return "\n".join(lines)


def _ratio(value: float, reference: float | None, digits: int = 2) -> str:
    return f"{value / reference:.{digits}f}" if reference else "—"


def _targets_table(rows: list[Row], backends: list[str], args: argparse.Namespace) -> str:
    def find(door: str, backend: str, workers: int = 1) -> Row | None:
        for row in rows:
            if (row.door, row.backend, row.workers) == (door, backend, workers):
                return row
        return None

    def ratio(numerator: Row | None, denominator: Row | None) -> str:
        if numerator is None or denominator is None:
            return "—"
        return _ratio(numerator.events_per_second, denominator.events_per_second)

    bare = rows[0]
    measures: list[tuple[str, dict[str, str]]] = []
    for door in (REST_VISIT, REST_WORKPLACE):
        measures.append(
            (f"{door} ÷ bare endpoint (≥ 0.35)", {b: ratio(find(door, b), bare) for b in backends})
        )
        measures.append(
            (
                f"{door} ÷ commit per request (≥ 10)",
                {b: ratio(find(door, b), find(NAIVE, b)) for b in backends},
            )
        )
        measures.append(
            (
                f"{door} ÷ group commit alone (no target: the design's ceiling here)",
                {b: ratio(find(door, b), find(GROUPED, b)) for b in backends},
            )
        )
        measures.append(
            (
                f"{door} p99 ms (< 50)",
                {b: f"{r.result.p99_ms:.1f}" if (r := find(door, b)) else "—" for b in backends},
            )
        )
    measures.append(
        (
            f"{RECORD_VISIT} ÷ bare endpoint (≥ 0.12)",
            {b: ratio(find(RECORD_VISIT, b), bare) for b in backends},
        )
    )
    measures.append(
        (
            "recordEvents events/s ÷ plain Strawberry list input (≥ 2)",
            {b: ratio(find(RECORD_EVENTS, b), find(PLAIN, b)) for b in backends},
        )
    )
    if args.scale_workers > 1:
        measures.append(
            (
                f"{REST_VISIT}, {args.scale_workers} workers ÷ 1 worker",
                {
                    b: ratio(find(REST_VISIT, b, args.scale_workers), find(REST_VISIT, b))
                    for b in backends
                },
            )
        )
    lines = [
        "| measure (target) | " + " | ".join(backends) + " |",
        "| --- | " + " | ".join("---:" for _ in backends) + " |",
    ]
    for name, values in measures:
        lines.append(f"| {name} | " + " | ".join(values.get(b, "—") for b in backends) + " |")
    return "\n".join(lines)


def _door(rows: list[Row], door: str) -> Row | None:
    return next((row for row in rows if row.door == door), None)


def _prefill_section(
    prefilled: dict[str, tuple[list[Row], list[Row]]], args: argparse.Namespace
) -> str:
    size = args.prefill
    lines = [
        f"Command: `{_command(args)}`. Each door on an empty database and on one that holds "
        f"{size:,} events (bench.stats's loader: 180 days of clicks, searches and visits with "
        "their rollups; then a WAL checkpoint on SQLite, a `VACUUM (ANALYZE)` and a checkpoint "
        "on PostgreSQL). One server per database, both running; each door is measured "
        f"{args.prefill_rounds} times on each, alternating (empty then full, full then empty: "
        "the machine's load weighs on both alike); events/s is the mean of the rounds, p50 "
        f"and p99 their medians (wrk, one thread, {args.connections} connections, "
        f"{args.seconds} s each). "
        "Target: no more than 10% slower (ratio ≥ 0.90).",
        "",
        "| door | database | events before | events/s | p50 ms | p99 ms | ratio to empty "
        "| acknowledged events | stored events |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend, (empty, full) in prefilled.items():
        for before, measured in ((0, empty), (size, full)):
            for row in measured:
                base = _door(empty, row.door)
                lines.append(
                    f"| {row.door} | {backend} | {before:,} | {row.events_per_second:,.0f} "
                    f"| {row.result.p50_ms:.1f} | {row.result.p99_ms:.1f} "
                    f"| {_ratio(row.events_per_second, base.events_per_second if base else None)} "
                    f"| {row.acknowledged:,} | {row.stored:,} |"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
