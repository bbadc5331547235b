"""Bulk import throughput: ``searchstats import`` of N events against a plain ``executemany``.

    python -m bench.import_bulk [--events 1000000] [--backends sqlite,postgresql]

Writes N events (searches, clicks linked to them, visits; every one with an eventId) as NDJSON,
imports the file with the real command into a fresh database, imports it a second time (nothing
new is stored), and inserts the same rows with a plain SQLAlchemy ``executemany`` (10,000 rows a
transaction, no validation, no rollups, no deduplication) into another fresh database, in the
same run. Writes the table into docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, insert, select

from app.settings import Settings
from app.storage.database import open_database
from app.storage.models import Engine, Event
from bench.common import ROOT, fresh_database, write_section

START = datetime(2025, 1, 1, tzinfo=UTC)
HASHID = "0123456789abcdef0123456789abcdef"
CHUNK = 10_000


def documents(count: int) -> Iterator[dict[str, Any]]:
    for n in range(count):
        at = (START + timedelta(seconds=17 * n)).isoformat()
        common = {"eventId": f"e{n}", "occurredAt": at, "sessionId": f"s{n % 5000}"}
        match n % 4:
            case 0:
                fields = {"query": f"term {n % 997}", "resultCount": n % 30, "queryId": f"q{n}"}
                yield {"search": common | fields}
            case 1:
                fields = {"documentId": f"d{n % 3001}", "rank": n % 10, "queryId": f"q{n - 1}"}
                yield {"click": common | fields}
            case _:
                yield {"visit": common | {"store": "shop", "url": f"/p/{n % 10_000}"}}


def write_file(path: Path, count: int) -> None:
    with path.open("wb") as out:
        for document in documents(count):
            out.write(orjson.dumps(document) + b"\n")


def rows(count: int, engine_id: int) -> Iterator[dict[str, Any]]:
    """The same events as table rows, as plainly as they can be made."""
    now = datetime.now(UTC)
    for document in documents(count):
        [(kind, fields)] = document.items()
        yield {
            "engine_id": engine_id,
            "kind": kind,
            "occurred_at": datetime.fromisoformat(fields["occurredAt"]),
            "received_at": now,
            "event_id": fields["eventId"],
            "door": "import",
            "session_id": fields["sessionId"],
            "device": "unknown",
            "is_bot": False,
            "query": fields.get("query"),
            "query_id": fields.get("queryId"),
            "result_count": fields.get("resultCount"),
            "clicked": False,
            "document_id": fields.get("documentId"),
            "rank": fields.get("rank"),
            "product_type": "search" if kind == "click" else None,
            "payload": {"store": fields["store"], "url": fields["url"]} if kind == "visit" else {},
        }


async def executemany(url: str, count: int) -> float:
    """Seconds to insert the rows with plain executemany, one transaction per CHUNK rows."""
    database = open_database(Settings(database_url=url, secret_key="bench"), pooled=False)
    try:
        async with database.engine.connect() as conn:
            engine_id = (await conn.execute(select(Engine.id))).scalar_one()  # type: ignore[call-overload]
        prepared = list(rows(count, engine_id))  # made before the clock starts
        started = time.perf_counter()
        for start in range(0, count, CHUNK):
            async with database.engine.begin() as conn:
                await conn.execute(insert(Event), prepared[start : start + CHUNK])
        return time.perf_counter() - started
    finally:
        await database.dispose()


async def stored(url: str) -> int:
    database = open_database(Settings(database_url=url, secret_key="bench"), pooled=False)
    try:
        async with database.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(Event))).scalar_one())
    finally:
        await database.dispose()


@dataclass
class Run:
    seconds: float
    summary: str


def searchstats(url: str, *argv: str) -> Run:
    env = {**os.environ, "SEARCHSTATS_DATABASE_URL": url, "SEARCHSTATS_SECRET_KEY": "bench"}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"searchstats {' '.join(argv)} failed:\n{result.stderr[-3000:]}")
    return Run(seconds, result.stderr.strip().splitlines()[-1] if result.stderr else "")


def measure(backend: str, path: Path, count: int) -> list[str]:
    with fresh_database(backend) as url:
        searchstats(url, "migrate")
        searchstats(url, "account", "create", "default")
        searchstats(url, "engine", "create", "default", "--hashid", HASHID)
        first = searchstats(url, "import", str(path))
        again = searchstats(url, "import", str(path))
        kept = asyncio.run(stored(url))
    with fresh_database(backend) as url:
        searchstats(url, "migrate")
        searchstats(url, "account", "create", "default")
        searchstats(url, "engine", "create", "default", "--hashid", HASHID)
        plain = asyncio.run(executemany(url, count))
    imported = _imported_seconds(first.summary) or first.seconds
    repeated = _imported_seconds(again.summary) or again.seconds
    ratio = (count / imported) / (count / plain)
    print(first.summary, again.summary, sep="\n", file=sys.stderr)
    return [
        f"| {backend} | `searchstats import` | {count:,} | {imported:.1f} | "
        f"{count / imported:,.0f} | {ratio:.2f} | {kept:,} |",
        f"| {backend} | the same file again (all duplicates) | {count:,} | {repeated:.1f} | "
        f"{count / repeated:,.0f} | {(count / repeated) / (count / plain):.2f} | {kept:,} |",
        f"| {backend} | plain `executemany` of the same rows | {count:,} | {plain:.1f} | "
        f"{count / plain:,.0f} | 1.00 | — |",
    ]


def _imported_seconds(summary: str) -> float | None:
    match = re.search(r", ([\d.]+) s \(", summary)
    return float(match[1]) if match else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    lines = [
        f"Command: `python -m bench.import_bulk --events {args.events} --backends "
        f"{args.backends}`. One NDJSON file of {args.events:,} events (half visits, a quarter "
        "searches, a quarter clicks linked to them; each with an eventId), imported by the real "
        "command into a fresh database; seconds are the import's own (the summary line), "
        "without the process start and migrations. The yardstick inserts the same rows with a "
        f"plain SQLAlchemy `executemany`, {CHUNK:,} rows a transaction, rows made before the "
        "clock starts, and nothing else: no parsing, validation, deduplication or rollups.",
        "",
        "| database | what | events | seconds | events/s | ratio to executemany | stored |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    with tempfile.TemporaryDirectory(prefix="searchstats-import-") as folder:
        path = Path(folder) / "events.ndjson"
        write_file(path, args.events)
        for backend in args.backends.split(","):
            measured = measure(backend, path, args.events)
            print("\n".join(measured), flush=True)  # each backend as soon as it is measured
            lines += measured
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        write_section("import", "## Bulk import\n\n" + table)


if __name__ == "__main__":
    main()
