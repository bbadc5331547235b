"""eventId makes a retry store nothing new, in a batch, across batches and under concurrency."""

from __future__ import annotations

import asyncio

import httpx

from app.services import accounts
from app.services.runtime import Runtime
from tests.api.helpers import (
    RECORD_EVENTS,
    data,
    gql,
    record,
    rollup_totals,
    shown_id,
    stored_events,
)
from tests.conftest import Tenant

RECORD_SEARCH = record("recordSearch")
RECORD_CLICK = record("recordClick")


async def test_same_event_id_twice_in_one_batch_is_stored_once(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    events = [
        {"search": {"query": "first", "eventId": "dup"}},
        {"visit": {"store": "s", "eventId": "other"}},
        {"search": {"query": "first", "eventId": "dup"}},
    ]
    first, other, again = data(
        await gql(client, tenant, RECORD_EVENTS, input=events), "recordEvents"
    )

    assert (first["duplicate"], other["duplicate"], again["duplicate"]) == (False, False, True)
    assert again["id"] == first["id"] != other["id"]
    assert again["queryId"] == first["queryId"]
    assert len(await stored_events(runtime)) == 2
    assert await rollup_totals(runtime) == {"search": 1, "visit": 1}


async def test_retried_batch_stores_only_what_is_new(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    old = [{"visit": {"store": "s", "eventId": f"v{i}"}} for i in range(3)]
    stored = data(await gql(client, tenant, RECORD_EVENTS, input=old), "recordEvents")
    retry = [*old, {"visit": {"store": "s", "eventId": "v3"}}]
    again = data(await gql(client, tenant, RECORD_EVENTS, input=retry), "recordEvents")

    assert [r["duplicate"] for r in again] == [True, True, True, False]
    assert [r["id"] for r in again[:3]] == [r["id"] for r in stored]
    assert len(await stored_events(runtime)) == 4
    assert await rollup_totals(runtime) == {"visit": 4}


async def test_event_id_is_unique_per_engine_not_globally(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, runtime: Runtime
) -> None:
    second = await accounts.create_engine(database=runtime.database, account=tenant.account)
    for credential, engine in ((tenant, None), (tenant, second.hashid), (other_tenant, None)):
        fields = {"query": "q", "eventId": "shared", "engine": engine}
        result = data(await gql(client, credential, RECORD_SEARCH, input=fields), "recordSearch")
        assert result["duplicate"] is False
    assert len(await stored_events(runtime)) == 3


async def test_retry_of_a_different_kind_answers_the_original(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    search = data(
        await gql(client, tenant, RECORD_SEARCH, input={"query": "q", "eventId": "e"}),
        "recordSearch",
    )
    click = data(
        await gql(
            client, tenant, RECORD_CLICK, input={"documentId": "d", "rank": 0, "eventId": "e"}
        ),
        "recordClick",
    )
    assert click == search | {"duplicate": True}
    assert [e.kind for e in await stored_events(runtime)] == ["search"]


async def test_concurrent_retries_store_once(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    fields = {"query": "storm", "resultCount": 2, "eventId": "concurrent-1"}
    bodies = await asyncio.gather(
        *(gql(client, tenant, RECORD_SEARCH, input=fields) for _ in range(10))
    )
    results = [data(body, "recordSearch") for body in bodies]

    assert sorted(r["duplicate"] for r in results) == [False] + [True] * 9
    assert len({r["id"] for r in results}) == 1
    assert len({r["queryId"] for r in results}) == 1
    [event] = await stored_events(runtime)
    assert shown_id(runtime, event) == results[0]["id"]
    assert await rollup_totals(runtime) == {"search": 1}


async def test_concurrent_batches_sharing_event_ids_store_each_once(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    """Overlapping batches racing each other: every event stored once, none lost."""
    batches = [
        [{"visit": {"store": "s", "eventId": f"e{i}"}} for i in range(start, start + 20)]
        for start in range(0, 50, 5)
    ]
    bodies = await asyncio.gather(
        *(gql(client, tenant, RECORD_EVENTS, input=batch) for batch in batches)
    )
    ids: dict[str, set[str]] = {}
    fresh = 0
    for batch, body in zip(batches, bodies, strict=True):
        for event, result in zip(batch, data(body, "recordEvents"), strict=True):
            ids.setdefault(event["visit"]["eventId"], set()).add(result["id"])
            fresh += not result["duplicate"]

    assert len(ids) == 65
    assert all(len(answers) == 1 for answers in ids.values())
    assert fresh == 65
    assert len(await stored_events(runtime)) == 65
    assert await rollup_totals(runtime) == {"visit": 65}
