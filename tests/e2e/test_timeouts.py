"""A stats question past its deadline, on a real server: 408 ``timeout``, the statement cancelled
in the database, and the worker free for the next request at once."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.faults import sql
from tests.e2e.servers import searchstats_serve

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DEADLINE_SECONDS = 0.2
ROWS = 1_500_000
BASE_MICROS = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
STEP_MICROS = 20_000_000  # one click every 20 s: 1.5M clicks fill the year's first 11 months
SEED = {
    "sqlite": f"""
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS - 1})
        INSERT INTO event (engine_id, kind, occurred_at, received_at, door, device, is_bot,
                           query, clicked, document_id, payload)
        SELECT 1, 'click', {BASE_MICROS} + i * {STEP_MICROS}, {BASE_MICROS}, 'seed', 'desktop',
               0, 'slow', 0, 'd' || (i % 1000), '{{}}' FROM n""",
    "postgresql": f"""
        INSERT INTO event (engine_id, kind, occurred_at, received_at, door, device, is_bot,
                           query, clicked, document_id, payload)
        SELECT 1, 'click', {BASE_MICROS} + i * {STEP_MICROS}, {BASE_MICROS}, 'seed', 'desktop',
               false, 'slow', false, 'd' || (i % 1000), '{{}}'
        FROM generate_series(0::bigint, {ROWS - 1}) AS i""",
}
ACTIVE_QUERIES = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()"""


def test_slow_stats_is_408_and_the_worker_stays_free(
    backend: str, empty_database_url: str, tmp_path: Path
) -> None:
    env = {
        "SEARCHSTATS_DATABASE_URL": empty_database_url,
        "SEARCHSTATS_SECRET_KEY": "deadline",
        "SEARCHSTATS_STATS_TIMEOUT_SECONDS": str(DEADLINE_SECONDS),
    }
    with searchstats_serve(env, tmp_path) as served:
        bootstrap = served.bootstrap()
        assert bootstrap is not None, served.output()
        key, hashid = bootstrap
        sql(empty_database_url, SEED[backend])
        sql(empty_database_url, "ANALYZE event")  # as autovacuum would after such a load
        token = {"Authorization": f"Token {key}"}
        clicks = f"/api/v2/stats/clicks?hashids[]={hashid}"
        with httpx.Client(base_url=served.base_url, trust_env=False, timeout=30) as http:
            started = time.monotonic()
            slow = http.get(f"{clicks}&from=20240101&to=20241231&query=slow", headers=token)
            slow_seconds = time.monotonic() - started
            assert slow.status_code == 408, slow.text
            assert slow.json()["error"]["code"] == "timeout"

            started = time.monotonic()
            alive = http.get("/healthz")
            quick = http.get(f"{clicks}&from=20240102&to=20240102&query=slow", headers=token)
            visit = http.post(
                "/api/v2/stats/visit", json={"store": "s", "session_id": "x"}, headers=token
            )
            after_seconds = time.monotonic() - started
            graphql = http.post(
                "/graphql",
                headers=token,
                json={
                    "query": '{ stats(from: "2024-01-01", to: "2024-12-31", granularity: DAY,'
                    ' filter: {query: "slow"}) { clicks { totalCount } sessions { totalCount } }'
                    " }"
                },
            )
        if backend == "postgresql":
            assert sql(empty_database_url, ACTIVE_QUERIES)[0][0] == 0  # cancelled, not running

    assert (alive.status_code, quick.status_code, visit.status_code) == (200, 200, 200)
    assert quick.json()["total_count"] == 4320  # the day's clicks, from the same worker
    assert after_seconds < 2
    assert slow_seconds < DEADLINE_SECONDS + 1.5
    assert graphql.json()["errors"][0]["extensions"]["code"] == "timeout", graphql.text
    print(
        f"stats deadline ({backend}): slow question answered 408 after {slow_seconds:.2f} s "
        f"(deadline {DEADLINE_SECONDS} s); three requests right after took {after_seconds:.2f} s"
    )
