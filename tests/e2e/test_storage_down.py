"""PostgreSQL stopped under load: every door answers 503 ``unavailable`` with ``Retry-After``, fast;
nothing is half-written; when it comes back the same process serves again, no restart."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.faults import IngestLoad, outcome, resend_unacknowledged, stored_event_ids
from tests.e2e.private_postgres import PrivatePostgres, postgres_bin, private_postgres
from tests.e2e.servers import ServeProcess, searchstats_serve

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

# Each door and what it answers with when storage is down, in its own dialect.
VISIT = {"store": "b0b0a7a5-5b3c-4d7e-8f9a-bb5a7e0f1c2d", "session_id": "s1"}
WORKPLACE = {
    "type": "click",
    "query_id": "q1",
    "page": 1,
    "content_source_id": "cs1",
    "document_id": "doc-1",
    "rank": 0,
    "event": "api",
}
VIEW = {"targetId": "a8e4b4a6-2f6b-4b53-9c5e-1d6f0e1a2b3c", "targetType": "item"}
STATS = '{ stats(from: "2025-01-01", to: "2025-01-02") { searches { totalCount } } }'
RECORD = 'mutation { recordVisit(input: {store: "s"}) { id } }'


def doors(key: str, hashid: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    token = {"Authorization": f"Token {key}"}
    return [
        ("graphql mutation", "POST", "/graphql", {"json": {"query": RECORD}, "headers": token}),
        ("graphql stats", "POST", "/graphql", {"json": {"query": STATS}, "headers": token}),
        ("doofinder visit", "POST", "/api/v2/stats/visit", {"json": VISIT, "headers": token}),
        (
            "doofinder clicks",
            "GET",
            f"/api/v2/stats/clicks?hashids[]={hashid}&from=20250101&to=20250102",
            {"headers": token},
        ),
        (
            "workplace event",
            "POST",
            "/api/ws/v1/analytics/event",
            {"json": WORKPLACE, "headers": {"Authorization": f"Bearer {key}"}},
        ),
        ("dspace viewevents", "POST", "/api/statistics/viewevents", {"json": VIEW}),
        ("readyz", "GET", "/readyz", {}),
    ]


def error_code(door: str, body: Any) -> str | None:
    """The error code or message each dialect puts in its body."""
    if door.startswith("graphql"):
        code: str = body["errors"][0]["extensions"]["code"]
        return code
    if door.startswith("doofinder"):
        return str(body["error"]["code"])
    if door.startswith("workplace"):
        return "unavailable" if body["errors"] else None
    if door.startswith("dspace"):
        return "unavailable" if body["status"] == 503 else None
    return str(body["status"])


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    if postgres_bin() is None:
        pytest.skip("PostgreSQL's server binaries are not installed")
    with private_postgres() as server:
        yield server


@pytest.fixture
def served(postgres: PrivatePostgres, tmp_path: Path) -> Iterator[tuple[ServeProcess, str, str]]:
    env = {
        "SEARCHSTATS_DATABASE_URL": postgres.url,
        "SEARCHSTATS_SECRET_KEY": "down",
        "SEARCHSTATS_DB_CONNECT_TIMEOUT_SECONDS": "1",
        # Every request goes to the database, so that each one meets the outage.
        "SEARCHSTATS_CREDENTIAL_CACHE_SECONDS": "0",
    }
    with searchstats_serve(env, tmp_path) as server:
        bootstrap = server.bootstrap()
        assert bootstrap is not None, server.output()
        yield server, *bootstrap


def probe_every_door(base_url: str, key: str, hashid: str) -> dict[str, tuple[int, float]]:
    """Each door's status and seconds; asserts the 503s are well-formed."""
    seen: dict[str, tuple[int, float]] = {}
    with httpx.Client(base_url=base_url, trust_env=False, timeout=20) as http:
        for door, method, path, options in doors(key, hashid):
            started = time.monotonic()
            response = http.request(method, path, **options)
            seen[door] = (response.status_code, time.monotonic() - started)
            if response.status_code == 503:
                assert int(response.headers["Retry-After"]) >= 1, door
                assert error_code(door, response.json()) == "unavailable", (door, response.text)
    return seen


def test_postgres_stopped_and_restarted_under_load(
    postgres: PrivatePostgres, served: tuple[ServeProcess, str, str]
) -> None:
    server, key, hashid = served
    assert_served(probe_every_door(server.base_url, key, hashid))
    with IngestLoad(
        server.base_url,
        key,
        clients=6,
        size=10,
        prefix=uuid.uuid4().hex[:6],
        stop_when_unanswered=False,
    ) as load:
        load.wait_acknowledged(300)
        postgres.stop_immediately()
        outage = probe_every_door(server.base_url, key, hashid)
        time.sleep(1)
        again = probe_every_door(server.base_url, key, hashid)
        postgres.start()
        recovered_within = wait_ready(server.base_url, within=20)
        acknowledged_before_stop = load.acknowledged
        load.wait_acknowledged(acknowledged_before_stop + 300)  # serving again, same process
    assert server.process.poll() is None, "the server must survive the outage by itself"

    for door, (status, seconds) in [*outage.items(), *again.items()]:
        assert status == 503, (door, status)
        assert seconds < 3, f"{door} took {seconds:.2f} s to answer 503"
    refused = sum(1 for b in load.batches if 503 in b.statuses)
    print(Counter(status for b in load.batches for status in b.statuses))
    assert_served(probe_every_door(server.base_url, key, hashid))

    database_url = postgres.url
    seen = outcome(load.batches, stored_event_ids(database_url))
    print(
        seen.line("PostgreSQL stopped and restarted")
        + f"; batches refused with 503: {refused}; slowest 503: "
        f"{max(s for _, s in [*outage.values(), *again.values()]):.3f} s; "
        f"ready again {recovered_within:.1f} s after the restart"
    )
    assert refused > 0
    assert (seen.lost, seen.partial_batches, seen.duplicates) == (0, 0, 0)
    resend_unacknowledged(server.base_url, key, load.batches)
    final = outcome(load.batches, stored_event_ids(database_url))
    assert final.stored == final.sent == final.acknowledged
    assert (final.partial_batches, final.duplicates) == (0, 0)


def assert_served(seen: dict[str, tuple[int, float]]) -> None:
    assert {door: status for door, (status, _) in seen.items() if status not in (200, 201)} == {}


def wait_ready(base_url: str, *, within: float) -> float:
    started = time.monotonic()
    with httpx.Client(base_url=base_url, trust_env=False, timeout=5) as http:
        while time.monotonic() - started < within:
            if http.get("/readyz").status_code == 200:
                return time.monotonic() - started
            time.sleep(0.1)
    raise AssertionError(f"not ready {within} s after PostgreSQL came back")


def test_private_server_is_really_gone_when_stopped(postgres: PrivatePostgres) -> None:
    """The outage above is real: nothing answers on the port while it is stopped."""
    postgres.stop_immediately()
    ready = subprocess.run(
        [str(postgres.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(postgres.port)],
        capture_output=True,
        check=False,
    )
    assert ready.returncode != 0
    postgres.start()
