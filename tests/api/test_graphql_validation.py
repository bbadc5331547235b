"""What the mutations refuse: engines of others, bad instants, bad batches; nothing half-stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.services import accounts
from app.services.runtime import Runtime
from tests.api.helpers import (
    RECORD_EVENTS,
    data,
    engine_id,
    error_code,
    error_message,
    gql,
    record,
    rollup_totals,
    shown_id,
    stored_events,
)
from tests.conftest import Tenant

RECORD_SEARCH = record("recordSearch")


def search(query: str = "q", **fields: Any) -> dict[str, Any]:
    return {"search": {"query": query, **fields}}


# ---- engine -----------------------------------------------------------------------------------


async def test_engine_may_name_another_engine_of_the_account(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    second = await accounts.create_engine(
        database=runtime.database, account=tenant.account, name="second"
    )
    data(await gql(client, tenant, RECORD_SEARCH, input={"query": "a"}), "recordSearch")
    named = {"query": "b", "engine": second.hashid}
    data(await gql(client, tenant, RECORD_SEARCH, input=named), "recordSearch")

    default, other = await stored_events(runtime)
    assert default.engine_id == await engine_id(runtime, tenant.hashid)
    assert other.engine_id == second.id


@pytest.mark.parametrize(
    ("engine", "code"),
    [
        ("other", "access_denied"),
        ("0123456789abcdef0123456789abcdef", "not_found"),
        ("not-a-hashid", "bad_params"),
        ("0123456789ABCDEF0123456789ABCDEF", "bad_params"),
        ("0123456789abcdef0123456789abcde", "bad_params"),
    ],
)
async def test_engine_refused(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    runtime: Runtime,
    engine: str,
    code: str,
) -> None:
    engine = other_tenant.hashid if engine == "other" else engine
    body = await gql(client, tenant, RECORD_SEARCH, input={"query": "x", "engine": engine})
    assert error_code(body) == code
    assert await stored_events(runtime) == []


async def test_batch_naming_another_accounts_engine_stores_nothing(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, runtime: Runtime
) -> None:
    events = [search("mine"), search("mine too"), search("theirs", engine=other_tenant.hashid)]
    body = await gql(client, tenant, RECORD_EVENTS, input=events)
    assert error_code(body) == "access_denied"
    assert await stored_events(runtime) == []


# ---- occurredAt -------------------------------------------------------------------------------


async def test_occurred_at_back_fill_is_stored_in_utc(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    fields = {"query": "old", "occurredAt": "2015-03-04T05:06:07.123456+02:00"}
    data(await gql(client, tenant, RECORD_SEARCH, input=fields), "recordSearch")
    [event] = await stored_events(runtime)
    assert event.occurred_at == datetime(2015, 3, 4, 3, 6, 7, 123456, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.received_at > event.occurred_at


def _resolved(occurred_at: str) -> str:
    """``now+Nmin`` is read when the test runs, not when it is collected minutes earlier."""
    if occurred_at.startswith("now+"):
        minutes = int(occurred_at.removeprefix("now+").removesuffix("min"))
        return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()
    return occurred_at


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2000-01-01T00:00:00Z",
        "2000-01-01T05:45:00+05:45",
        "now+4min",
    ],
)
async def test_occurred_at_accepted_from_2000_to_a_few_minutes_ahead(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime, occurred_at: str
) -> None:
    occurred_at = _resolved(occurred_at)
    fields = {"query": "edge", "occurredAt": occurred_at}
    data(await gql(client, tenant, RECORD_SEARCH, input=fields), "recordSearch")
    [event] = await stored_events(runtime)
    assert event.occurred_at == datetime.fromisoformat(occurred_at)


@pytest.mark.parametrize(
    ("occurred_at", "problem"),
    [
        ("1999-12-31T23:59:59.999999Z", "before 2000-01-01"),
        ("2000-01-01T00:30:00+01:00", "before 2000-01-01"),
        ("1970-01-01T00:00:00Z", "before 2000-01-01"),
        ("now+6min", "future"),
        ("9999-12-31T23:59:59Z", "future"),
        ("2020-06-01T12:00:00", "timezone"),
        ("2020-06-01", "timezone"),
    ],
)
async def test_occurred_at_refused(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime, occurred_at: str, problem: str
) -> None:
    occurred_at = _resolved(occurred_at)
    body = await gql(client, tenant, RECORD_SEARCH, input={"query": "x", "occurredAt": occurred_at})
    assert error_code(body) == "bad_params"
    assert "occurredAt" in error_message(body)
    assert problem in error_message(body)
    assert await stored_events(runtime) == []


async def test_malformed_occurred_at_is_bad_params(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    body = await gql(client, tenant, RECORD_SEARCH, input={"query": "x", "occurredAt": "soon"})
    assert error_code(body) == "bad_params"
    assert await stored_events(runtime) == []


# ---- recordEvents -----------------------------------------------------------------------------


async def test_record_events_stores_every_kind_in_order(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    events = [
        {"view": {"targetId": "0b7d3b8e-1c2f-4f55-9d55-51f0e34c1a6e", "targetType": "item"}},
        search("batch"),
        {"visit": {"store": "s"}},
        {"click": {"documentId": "d", "rank": 0}},
        {"feedback": {"documentId": "d", "score": 1}},
    ]
    results = data(await gql(client, tenant, RECORD_EVENTS, input=events), "recordEvents")

    # Results answer the events in the order sent (searches are inserted first, to be linkable).
    kinds = {shown_id(runtime, e): e.kind for e in await stored_events(runtime)}
    assert [kinds[r["id"]] for r in results] == ["view", "search", "visit", "click", "feedback"]
    assert [r["status"] for r in results] == ["registered"] * 5
    assert [r["queryId"] is not None for r in results] == [False, True, False, False, False]


async def test_record_events_of_nothing_stores_nothing(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    assert data(await gql(client, tenant, RECORD_EVENTS, input=[]), "recordEvents") == []
    assert await stored_events(runtime) == []


@pytest.mark.parametrize(
    "item",
    [
        {"search": {"query": "a"}, "visit": {"store": "s"}},
        {},
        {"search": None},
    ],
    ids=["two-kinds", "empty", "null"],
)
async def test_record_events_item_holds_exactly_one_event(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime, item: dict[str, Any]
) -> None:
    body = await gql(client, tenant, RECORD_EVENTS, input=[search("fine"), item])
    assert error_code(body) == "bad_params"
    assert await stored_events(runtime) == []


@pytest.mark.parametrize(
    "item",
    [
        '{search: {query: "a"}, visit: {store: "s"}}',
        "{}",
    ],
    ids=["two-kinds", "empty"],
)
async def test_record_events_literal_item_holds_exactly_one_event(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime, item: str
) -> None:
    document = f"mutation {{ recordEvents(input: [{item}]) {{ id }} }}"
    body = await gql(client, tenant, document)
    assert error_code(body) == "bad_params"
    assert "EventInput" in error_message(body)
    assert await stored_events(runtime) == []


async def test_record_events_is_all_or_nothing(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    events = [search(f"q{i}") for i in range(6)]
    events[3] = {"click": {"documentId": "d", "rank": -1}}

    body = await gql(client, tenant, RECORD_EVENTS, input=events)

    assert error_code(body) == "bad_params"
    assert error_message(body).startswith("events[3]: rank")
    assert "events[0]" not in error_message(body)
    assert await stored_events(runtime) == []
    assert await rollup_totals(runtime) == {}


async def test_record_events_names_every_bad_index(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    events = [search("fine"), search("", resultCount=-1), {"visit": {"store": ""}}]
    body = await gql(client, tenant, RECORD_EVENTS, input=events)
    message = error_message(body)
    assert "events[1]: query is required" in message
    assert "events[1]: resultCount" in message
    assert "events[2]: store" in message
    assert "events[0]" not in message
    assert await stored_events(runtime) == []


async def test_record_events_takes_a_thousand(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    events = [{"visit": {"store": "s", "eventId": f"e{i}"}} for i in range(1000)]
    results = data(await gql(client, tenant, RECORD_EVENTS, input=events), "recordEvents")
    assert len(results) == 1000
    assert len({r["id"] for r in results}) == 1000
    assert (await rollup_totals(runtime))["visit"] == 1000


async def test_record_events_refuses_more_than_a_thousand(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    events = [{"visit": {"store": "s"}}] * 1001
    body = await gql(client, tenant, RECORD_EVENTS, input=events)
    assert error_code(body) == "bad_params"
    assert "1000" in error_message(body)
    assert await stored_events(runtime) == []


async def test_a_batch_of_one_still_names_the_index(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    bad = await gql(
        client, tenant, RECORD_EVENTS, input=[{"click": {"documentId": "d", "rank": -1}}]
    )
    assert bad["errors"][0]["message"].startswith("events[0]: rank")
    foreign = await gql(
        client,
        tenant,
        RECORD_EVENTS,
        input=[
            {"search": {"query": "q"}},
            {"search": {"query": "q", "engine": other_tenant.hashid}},
        ],
    )
    assert foreign["errors"][0]["extensions"]["code"] == "access_denied"
    assert foreign["errors"][0]["message"].startswith("events[1]: ")
