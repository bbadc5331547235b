"""Stats latency at size: the 90-day daily clicks question through GraphQL and REST, against the
plain SQL group-by over the same table, on SQLite and PostgreSQL.

    python -m bench.stats [--sizes 1000000,10000000] [--backends sqlite,postgresql]

Events are bulk-loaded with SQL (180 days, 60% clicks) and their rollups (15-minute, hourly and
daily) derived with SQL, as the write path would have kept them; then a real ``searchstats serve``
answers over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import httpx
from sqlalchemy import text

from app.auth.keys import KeyVault
from app.services import accounts
from app.settings import Settings
from app.storage.database import Database, open_database
from app.storage.migrate import upgrade_to_head
from app.storage.rollups import COARSE
from bench import plots
from bench.common import fresh_database, searchstats_server, write_section

SECRET = "bench-secret"
DAYS = 180
END = datetime(2026, 1, 1, tzinfo=UTC)
START = END - timedelta(days=DAYS)
WINDOW_FIRST, WINDOW_LAST = date(2025, 10, 3), date(2025, 12, 31)  # 90 days
CHUNK = 500_000

# One row per generated number n: kind, time, device, query, document spread deterministically.
_EVENT_COLUMNS = (
    "engine_id, kind, occurred_at, received_at, door, device, is_bot, clicked, query, "
    "document_id, rank, session_id, payload"
)


def _select_rows(n: str, start_us: int, step_us: int, dialect: str) -> str:
    modulo = "%"
    text_of = "CAST({} AS TEXT)" if dialect == "sqlite" else "({})::text"
    return (
        f"SELECT 1, CASE WHEN {n} {modulo} 10 < 6 THEN 'click' WHEN {n} {modulo} 10 < 9 "
        f"THEN 'search' ELSE 'visit' END, "
        f"{start_us} + {n} * {step_us} + ({n} * 7919) {modulo} {step_us}, {start_us}, 'bench', "
        f"CASE WHEN {n} {modulo} 3 = 0 THEN 'mobile' ELSE 'desktop' END, FALSE, FALSE, "
        f"'q' || {text_of.format(f'{n} % 1000')}, 'd' || {text_of.format(f'{n} % 10000')}, "
        f"{n} {modulo} 20, 's' || {text_of.format(f'{n} / 5')}, '{{}}'"
    )


async def load(database: Database, size: int) -> float:
    """Insert ``size`` events and their rollups; returns the seconds it took."""
    began = time.perf_counter()
    dialect = database.engine.dialect.name
    start_us = int(START.timestamp()) * 1_000_000
    step_us = DAYS * 86_400 * 1_000_000 // size  # spread evenly, jittered within each step
    for offset in range(0, size, CHUNK):
        count = min(CHUNK, size - offset)
        if dialect == "sqlite":
            source = (
                f"WITH RECURSIVE g(n) AS (SELECT {offset} UNION ALL SELECT n + 1 FROM g "
                f"WHERE n < {offset + count - 1}) {_select_rows('n', start_us, step_us, dialect)} "
                "FROM g"
            )
        else:
            source = (
                f"{_select_rows('n', start_us, step_us, dialect)} "
                f"FROM generate_series({offset}::bigint, {offset + count - 1}::bigint) AS n"
            )
        async with database.engine.begin() as conn:
            await conn.execute(text(f"INSERT INTO event ({_EVENT_COLUMNS}) {source}"))
    async with database.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO rollup (engine_id, bucket, metric, device, is_bot, count) "
                "SELECT engine_id, occurred_at - occurred_at % 900000000, kind, device, is_bot, "
                "count(*) FROM event GROUP BY 1, 2, 3, 4, 5"
            )
        )
        for grain, table in COARSE:
            await conn.execute(
                text(
                    f"INSERT INTO {table.name} (engine_id, bucket, metric, device, is_bot, count) "
                    f"SELECT engine_id, bucket - bucket % {grain}, metric, device, is_bot, "
                    "sum(count) FROM rollup GROUP BY 1, 2, 3, 4, 5"
                )
            )
        await conn.execute(text("ANALYZE"))
    return time.perf_counter() - began


PLAIN_SQL = (
    "SELECT (occurred_at - occurred_at % 86400000000) AS day, count(*) FROM event "
    "WHERE engine_id = 1 AND kind = 'click' AND occurred_at >= :lo AND occurred_at < :hi "
    "GROUP BY day ORDER BY day"
)


async def time_plain_sql(database: Database, repeat: int) -> float:
    lo = int(datetime.combine(WINDOW_FIRST, datetime.min.time(), UTC).timestamp()) * 1_000_000
    hi = lo + 90 * 86_400 * 1_000_000
    samples = []
    async with database.engine.connect() as conn:
        for _ in range(repeat + 1):
            began = time.perf_counter()
            rows = (await conn.execute(text(PLAIN_SQL), {"lo": lo, "hi": hi})).all()
            samples.append(time.perf_counter() - began)
    assert len(rows) == 90
    return statistics.median(samples[1:])


def time_http(call: Callable[[], httpx.Response], repeat: int) -> float:
    call()  # warm caches and connections
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = call()
        samples.append(time.perf_counter() - began)
        response.raise_for_status()
    return statistics.median(samples)


GRAPHQL_CLICKS = """query($f: String!, $t: String!, $filter: StatsFilterInput) {
  stats(from: $f, to: $t, filter: $filter) { clicks { totalCount points { timestamp count } } } }"""


def measure(url: str, key: str, repeat: int) -> dict[str, float]:
    headers = {"Authorization": f"Token {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        variables = {"f": WINDOW_FIRST.isoformat(), "t": WINDOW_LAST.isoformat()}

        def graphql(filter_: dict[str, str] | None = None) -> httpx.Response:
            response = http.post(
                "/graphql",
                json={"query": GRAPHQL_CLICKS, "variables": {**variables, "filter": filter_}},
            )
            assert "errors" not in response.json(), response.text
            return response

        params = {"from": WINDOW_FIRST.strftime("%Y%m%d"), "to": WINDOW_LAST.strftime("%Y%m%d")}
        return {
            "graphql": time_http(graphql, repeat),
            "rest": time_http(lambda: http.get("/api/v2/stats/clicks", params=params), repeat),
            "filtered": time_http(lambda: graphql({"query": "q7"}), max(3, repeat // 4)),
        }


async def prepare(url: str, size: int) -> tuple[str, float, float]:
    database = open_database(Settings(database_url=url, secret_key=SECRET), pooled=False)
    try:
        await upgrade_to_head(database)
        created = await accounts.create_account(
            database=database, vault=KeyVault(SECRET), name="bench"
        )
        await accounts.create_engine(database=database, account="bench")
        seconds = await load(database, size)
        plain = await time_plain_sql(database, repeat=5)
    finally:
        await database.dispose()
    return created.api_key, seconds, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    lines = [
        f"Command: `python -m bench.stats --sizes {args.sizes} --backends {args.backends}`. "
        "The question: clicks per day over 90 days (UTC), one engine; medians of "
        f"{args.repeat} requests over HTTP (GraphQL, REST) against the median of 5 runs of the "
        "plain SQL group-by on the same table (no HTTP). Filtered: the same through GraphQL "
        'with `filter: {query: "q7"}` (scans raw events).',
        "",
        "| database | events | load s | plain SQL ms | GraphQL ms | REST ms | GraphQL ÷ SQL "
        "| REST ÷ SQL | filtered ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend in args.backends.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            with fresh_database(backend) as url:
                key, load_seconds, plain = asyncio.run(prepare(url, size))
                with searchstats_server(url, api_key=key) as server:
                    timings = measure(server.url, key, args.repeat)
            line = (
                f"| {backend} | {size:,} | {load_seconds:.0f} | {plain * 1000:.1f} "
                f"| {timings['graphql'] * 1000:.1f} | {timings['rest'] * 1000:.1f} "
                f"| {timings['graphql'] / plain:.3f} | {timings['rest'] / plain:.3f} "
                f"| {timings['filtered'] * 1000:.1f} |"
            )
            print(line, flush=True)
            lines.append(line)
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        write_section("stats", "## Stats at size\n\n" + table)
        plots.plot_sections()


if __name__ == "__main__":
    main()
