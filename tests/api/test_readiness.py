"""``/readyz`` during a rolling upgrade: a schema behind this code is not ready; at its head or
ahead of it (a newer version migrated the database while this worker runs) it is, and the
worker goes on writing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from alembic.script import ScriptDirectory

from app.main import create_app
from app.services.runtime import Runtime, build_runtime
from app.settings import Settings
from app.storage.migrate import alembic_config
from tests.conftest import Tenant, set_schema_revision

SCRIPTS = ScriptDirectory.from_config(alembic_config())
HEAD = SCRIPTS.get_current_head() or ""
PREVIOUS = str(SCRIPTS.get_revision(HEAD).down_revision)
NEWER = "9999"  # a revision this code does not know: a newer version's
VISIT = {"store": "b0b0a7a5-5b3c-4d7e-8f9a-bb5a7e0f1c2d", "session_id": "s1"}

SetRevision = Callable[[str], Awaitable[None]]


@pytest.fixture
async def revision(database_url: str) -> AsyncIterator[SetRevision]:
    """Sets the database's revision; the database is left at the head again (on PostgreSQL,
    one database serves the whole run)."""

    async def put(name: str) -> None:
        await set_schema_revision(database_url, name)

    yield put
    await put(HEAD)


@pytest.mark.parametrize(
    ("at", "status", "migrations"),
    [(PREVIOUS, 503, "pending"), (HEAD, 200, "ok"), (NEWER, 200, "ahead")],
    ids=["behind", "at-head", "ahead"],
)
async def test_ready_unless_the_schema_is_behind_the_code(
    client: httpx.AsyncClient,
    revision: SetRevision,
    tenant: Tenant,
    at: str,
    status: int,
    migrations: str,
) -> None:
    await revision(at)

    ready = await client.get("/readyz")

    assert ready.status_code == status
    # Writes are probed on a schema this code can write to (not one behind it).
    writes = {"writes": "ok"} if status == 200 else {}
    assert ready.json() == {
        "status": "ready" if status == 200 else "unavailable",
        "checks": {"database": "ok", "migrations": migrations} | writes,
    }
    assert ready.headers.get("Retry-After") == (None if status == 200 else "1")
    if status == 200:  # a worker the balancer keeps sending to writes
        visit = await client.post(
            "/api/v2/stats/visit", json=VISIT, headers={"Authorization": f"Token {tenant.api_key}"}
        )
        assert visit.status_code == 200, visit.text


async def test_an_unready_worker_counts_no_error(
    client: httpx.AsyncClient, revision: SetRevision
) -> None:
    """A worker waiting for ``migrate`` is no storage outage: searchstats_errors_total (which
    alerts watch for code="unavailable") leaves the probes' answers out."""
    await revision(PREVIOUS)
    assert [(await client.get("/readyz")).status_code for _ in range(3)] == [503] * 3
    metrics = (await client.get("/metrics")).text
    assert "searchstats_errors_total{" not in metrics
    # Timed like any request all the same.
    assert 'searchstats_request_duration_seconds_count{method="GET",route="/readyz"} 3.0' in metrics


async def test_a_database_never_migrated_is_not_ready(empty_database_url: str) -> None:
    settings = Settings(database_url=empty_database_url, secret_key="test")
    runtime = build_runtime(settings)
    await runtime.start()
    try:
        transport = httpx.ASGITransport(app=create_app(settings, runtime=runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            ready = await http.get("/readyz")
    finally:
        await runtime.stop()
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": "ok", "migrations": "pending"}


async def test_a_worker_says_once_that_the_schema_moved_ahead(
    client: httpx.AsyncClient,
    runtime: Runtime,
    revision: SetRevision,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``searchstats migrate`` of a newer version ran while this worker serves: one warning,
    not one per probe."""
    with caplog.at_level(logging.WARNING, logger="app.services.health"):
        assert (await client.get("/readyz")).json()["checks"]["migrations"] == "ok"
        assert caplog.records == []

        await revision(NEWER)
        answers = [(await client.get("/readyz")).status_code for _ in range(3)]

    assert answers == [200, 200, 200]
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING
    assert warning.getMessage().startswith(
        f"the database's schema (revision {NEWER}) is newer than this version of searchstats "
        f"knows (head {HEAD}): still ready"
    )
