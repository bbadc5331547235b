"""Ingest throughput of the REST doors against the bare-endpoint and commit-per-request yardsticks.

    python -m bench.ingest [--seconds 10] [--connections 64] [--backends sqlite,postgresql]

Starts every server as a real process, drives it with wrk on loopback, checks that the database
holds exactly the acknowledged events, and writes the table into docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx
import orjson
from sqlalchemy import func, select

from app.settings import Settings
from app.storage.database import open_database
from app.storage.models import Event
from bench.common import (
    ROOT,
    WrkResult,
    free_port,
    fresh_database,
    searchstats_server,
    stop,
    write_section,
    wrk_post,
)

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


@dataclass
class Row:
    door: str
    backend: str
    result: WrkResult
    stored: int | None = None
    events_per_request: int = 1


def graphql_body(mutation: str, variables: dict[str, object]) -> dict[str, object]:
    return {"query": mutation, "variables": variables}


GRAPHQL_VISIT = graphql_body(
    "mutation($i: VisitInput!) { recordVisit(input: $i) { id } }",
    {"i": {"store": VISIT["store"], "sessionId": "s1", "url": "/shoes"}},
)
BATCH = 100
GRAPHQL_BATCH = graphql_body(
    "mutation($i: [EventInput!]!) { recordEvents(input: $i) { id } }",
    {"i": [{"visit": {"store": VISIT["store"], "sessionId": "s1", "url": "/shoes"}}] * BATCH},
)
# (label, path, body, credential scheme, events per request)
DOORS: tuple[tuple[str, str, object, str, int], ...] = (
    ("REST visit", "/api/v2/stats/visit", VISIT, "Token", 1),
    ("REST workplace", "/api/ws/v1/analytics/event", WORKPLACE, "Bearer", 1),
    ("GraphQL recordVisit", "/graphql", GRAPHQL_VISIT, "Token", 1),
    (f"GraphQL recordEvents, {BATCH} per request", "/graphql", GRAPHQL_BATCH, "Token", BATCH),
)


def reference(database_url: str, path: str, seconds: int, connections: int) -> WrkResult:
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
            orjson.dumps(VISIT).decode(),
            {"Content-Type": "application/json"},
            seconds=seconds,
            connections=connections,
        )
    finally:
        stop(process)


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


def real_doors(backend: str, seconds: int, connections: int, workers: int) -> list[Row]:
    rows = []
    for door, path, body, scheme, per_request in DOORS:
        with fresh_database(backend) as url, searchstats_server(url, workers=workers) as server:
            headers = {
                "Content-Type": "application/json",
                "Authorization": f"{scheme} {server.api_key}",
                "User-Agent": BROWSER,
            }
            result = wrk_post(
                server.url + path,
                orjson.dumps(body).decode(),
                headers,
                seconds=seconds,
                connections=connections,
            )
            stop(server.process)
            stored = asyncio.run(stored_events(url))
            label = door if workers == 1 else f"{door} ({workers} workers)"
            rows.append(Row(label, backend, result, stored, per_request))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    backends = args.backends.split(",")

    bare = reference("sqlite+aiosqlite://", "/bare", args.seconds, args.connections)
    lines = [
        f"Command: `python -m bench.ingest --seconds {args.seconds} --connections "
        f"{args.connections} --backends {args.backends}` (wrk, one thread, {args.connections} "
        "connections, loopback; each server one uvicorn worker unless noted).",
        "",
        "| door | database | requests/s | events/s | p50 ms | p99 ms | requests vs bare "
        "| events vs commit-per-request | acknowledged events | stored events |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        _line("bare Starlette endpoint (same JSON parsing)", "none", bare, bare, None),
    ]
    for backend in backends:
        with fresh_database(backend) as url:
            naive = reference(url, "/naive", args.seconds, args.connections)
        lines.append(_line("commit per request", backend, naive, bare, naive))
        for row in real_doors(backend, args.seconds, args.connections, args.workers):
            lines.append(
                _line(
                    row.door, backend, row.result, bare, naive, row.stored, row.events_per_request
                )
            )
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        write_section("ingest", "## Ingest\n\n" + table)


def _line(
    door: str,
    backend: str,
    result: WrkResult,
    bare: WrkResult,
    naive: WrkResult | None,
    stored: int | None = None,
    per_request: int = 1,
) -> str:
    """One row; the ratios compare requests with the bare endpoint and events with the naive one."""
    acknowledged = (result.requests - result.non_2xx) * per_request
    events = result.requests_per_second * per_request
    versus_naive = (
        f"{events / naive.requests_per_second:.1f}" if naive and naive.requests_per_second else "—"
    )
    return (
        f"| {door} | {backend} | {result.requests_per_second:,.0f} | {events:,.0f} "
        f"| {result.p50_ms:.1f} | {result.p99_ms:.1f} "
        f"| {result.requests_per_second / bare.requests_per_second:.2f} "
        f"| {versus_naive} | {acknowledged:,} | {'—' if stored is None else f'{stored:,}'} |"
    )


if __name__ == "__main__":
    main()
