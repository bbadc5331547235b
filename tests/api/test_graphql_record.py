"""Recording every event kind through GraphQL mutations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

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

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"

RECORD_SEARCH = """
mutation($input: SearchInput!) {
  recordSearch(input: $input) { id status duplicate queryId }
}"""
RECORD_CLICK = """
mutation($input: ClickInput!) {
  recordClick(input: $input) { id status duplicate queryId }
}"""


async def test_search_then_linked_click(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    search = await gql(
        client, tenant, RECORD_SEARCH, input={"query": "lorem ipsum", "resultCount": 14}
    )
    result = search["data"]["recordSearch"]
    assert result["status"] == "registered"
    assert result["duplicate"] is False
    assert len(result["queryId"]) == 32

    click = await gql(
        client,
        tenant,
        RECORD_CLICK,
        input={"queryId": result["queryId"], "documentId": "doc-1", "rank": 2},
    )
    assert click["data"]["recordClick"]["status"] == "registered"

    events = await stored_events(runtime)
    assert [e.kind for e in events] == ["search", "click"]
    stored_click = events[1]
    assert stored_click.search_id == events[0].id
    assert stored_click.query == "lorem ipsum"
    assert stored_click.result_count == 14
    assert events[0].clicked is True


async def test_same_event_id_is_stored_once(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    payload = {"query": "retry me", "eventId": "evt-1"}
    first = (await gql(client, tenant, RECORD_SEARCH, input=payload))["data"]["recordSearch"]
    second = (await gql(client, tenant, RECORD_SEARCH, input=payload))["data"]["recordSearch"]
    assert first["duplicate"] is False
    assert second["duplicate"] is True
    assert second["id"] == first["id"]
    assert second["queryId"] == first["queryId"]
    assert len(await stored_events(runtime)) == 1


async def test_missing_credentials_is_not_authenticated(client: httpx.AsyncClient) -> None:
    body = await gql(client, None, RECORD_SEARCH, input={"query": "x"})
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "not_authenticated"


@pytest.mark.parametrize("rank", [-1])
async def test_invalid_click_is_bad_params(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime, rank: int
) -> None:
    body = await gql(client, tenant, RECORD_CLICK, input={"documentId": "d", "rank": rank})
    assert body["errors"][0]["extensions"]["code"] == "bad_params"
    assert "rank" in body["errors"][0]["message"]
    assert await stored_events(runtime) == []


# 1,024 characters of Chinese: 3,072 bytes, more than a PostgreSQL index entry holds.
CHINESE = "".join(chr(0x4E00 + (n * 7919) % 20000) for n in range(1024))


@pytest.mark.parametrize(
    ("query", "stored"),
    [
        pytest.param(CHINESE[:682], True, id="2046-bytes"),
        pytest.param("\U0001f50e" * 512, True, id="2048-bytes"),
        pytest.param(CHINESE[:683], False, id="2049-bytes"),
        pytest.param(CHINESE, False, id="1024-characters"),
    ],
)
async def test_a_query_is_bounded_in_bytes_too(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime, query: str, stored: bool
) -> None:
    body = await gql(client, tenant, RECORD_SEARCH, input={"query": query})
    if stored:
        search = data(body, "recordSearch")
        click = {"queryId": search["queryId"], "documentId": "d", "rank": 0}
        data(await gql(client, tenant, RECORD_CLICK, input=click), "recordClick")
        assert [event.query for event in await stored_events(runtime)] == [query, query]
        return
    assert error_code(body) == "bad_params"
    assert error_message(body) == "query must be at most 2048 bytes"
    assert await stored_events(runtime) == []


async def test_a_batch_names_the_query_over_its_bytes(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    events = [{"search": {"query": "fine"}}, {"search": {"query": CHINESE}}]
    body = await gql(client, tenant, RECORD_EVENTS, input=events)
    assert error_code(body) == "bad_params"
    assert error_message(body) == "events[1]: query must be at most 2048 bytes"
    assert await stored_events(runtime) == []


@pytest.mark.parametrize(
    "target_id",
    [
        "+23e4567-e89b-12d3-a456-426614174000",
        " 23e4567-e89b-12d3-a456-42661417400 ",
        "123e4567e89b12d3a456426614174000----",
        "123e4567-e89b-12d3-a456-4266_1417400",
        "\u0661\u0662\u0663e4567-e89b-12d3-a456-426614174000",
        "{123e4567-e89b-12d3-a456-4266141740}",
    ],
)
async def test_a_target_id_must_be_a_uuid_as_written(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime, target_id: str
) -> None:
    view = {"targetId": target_id, "targetType": "item"}
    body = await gql(client, tenant, record("recordView"), input=view)
    assert error_code(body) == "bad_params"
    assert error_message(body) == "targetId must be a UUID"
    assert await stored_events(runtime) == []


async def test_a_uuid_is_taken_in_either_case_and_stored_as_sent(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    view = {"targetId": "123E4567-E89B-12D3-A456-426614174000", "targetType": "item"}
    data(await gql(client, tenant, record("recordView"), input=view), "recordView")
    [event] = await stored_events(runtime)
    assert event.document_id == "123E4567-E89B-12D3-A456-426614174000"


SCOPE = "9f0c6ad3-6ae4-4d84-a4fb-1b6f0a2f3c11"
ITEM = "0b7d3b8e-1c2f-4f55-9d55-51f0e34c1a6e"
STORE = "c2f8a8a4-6b3e-4a3a-9d55-2b7d9b4a1e60"
COMMON = {"sessionId": "s-1", "userId": "u-1"}

# (mutation, input, typed columns expected on the stored row, expected payload)
KINDS: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        "recordView",
        {"targetId": ITEM, "targetType": "item", "referrer": "https://example.org/"},
        {"kind": "view", "document_id": ITEM, "query": None, "query_id": None},
        {"targetType": "item", "referrer": "https://example.org/"},
    ),
    (
        "recordSearch",
        {
            "query": "open access",
            "resultCount": 7,
            "scope": SCOPE,
            "dsoType": "item",
            "configuration": "default",
            "appliedFilters": [
                {"filter": "author", "operator": "equals", "value": "Smith", "label": "Smith, J."}
            ],
            "sort": {"by": "score", "order": "desc"},
            "page": {"size": 10, "totalElements": 7, "totalPages": 1, "number": 0},
        },
        {"kind": "search", "query": "open access", "result_count": 7, "document_id": None},
        {
            "scope": SCOPE,
            "dsoType": "item",
            "configuration": "default",
            "appliedFilters": [
                {"filter": "author", "operator": "equals", "value": "Smith", "label": "Smith, J."}
            ],
            "sort": {"by": "score", "order": "desc"},
            "page": {"size": 10, "totalElements": 7, "totalPages": 1, "number": 0},
        },
    ),
    (
        "recordVisit",
        {
            "store": STORE,
            "url": "https://shop.example/p/1",
            "pageType": "product",
            "dfid": "abc@product@1",
        },
        {"kind": "visit", "document_id": "abc@product@1", "query": None},
        {"store": STORE, "url": "https://shop.example/p/1", "pageType": "product"},
    ),
    (
        "recordClick",
        {
            "documentId": "doc-9",
            "rank": 4,
            "page": 2,
            "contentSourceId": "cs-1",
            "event": "result_click",
            "productType": "BANNER",
        },
        {
            "kind": "click",
            "document_id": "doc-9",
            "rank": 4,
            "page": 2,
            "content_source_id": "cs-1",
            "product_type": "banner",
            "search_id": None,
            "query_id": None,
        },
        {"event": "result_click"},
    ),
    (
        "recordFeedback",
        {"documentId": "doc-3", "score": -1, "rank": 0, "page": 1, "contentSourceId": "cs-2"},
        {
            "kind": "feedback",
            "document_id": "doc-3",
            "score": -1,
            "rank": 0,
            "page": 1,
            "content_source_id": "cs-2",
            "product_type": None,
        },
        {},
    ),
]


@pytest.mark.parametrize(
    ("mutation", "fields", "columns", "payload"), KINDS, ids=[kind[0] for kind in KINDS]
)
async def test_each_mutation_stores_its_row(
    client: httpx.AsyncClient,
    tenant: Tenant,
    runtime: Runtime,
    mutation: str,
    fields: dict[str, Any],
    columns: dict[str, Any],
    payload: dict[str, Any],
) -> None:
    before = datetime.now(UTC)
    result = data(await gql(client, tenant, record(mutation), input=fields | COMMON), mutation)

    assert result["status"] == "registered"
    assert result["duplicate"] is False
    [event] = await stored_events(runtime)
    assert shown_id(runtime, event) == result["id"]
    assert event.engine_id == await engine_id(runtime, tenant.hashid)
    stored = {name: getattr(event, name) for name in columns}
    assert stored == columns
    assert event.payload == payload
    assert (event.session_id, event.user_id, event.event_id) == ("s-1", "u-1", None)
    assert (event.door, event.device, event.is_bot) == ("graphql", "desktop", False)
    assert before <= event.occurred_at == event.received_at <= datetime.now(UTC)
    if mutation == "recordSearch":
        assert event.query_id == result["queryId"]
        assert len(result["queryId"]) == 32
    else:
        assert result["queryId"] is None


async def test_mutations_of_one_operation_are_stored_one_by_one_until_one_fails(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    document = """mutation {
      first: recordSearch(input: {query: "first", eventId: "e1"}) { id }
      bad: recordClick(input: {documentId: "d", rank: -1, eventId: "e2"}) { id }
      last: recordSearch(input: {query: "last", eventId: "e3"}) { id }
    }"""
    body = await gql(client, tenant, document)
    assert error_code(body) == "bad_params"
    assert body["errors"][0]["path"] == ["bad"]
    assert [(e.query, e.event_id) for e in await stored_events(runtime)] == [("first", "e1")]

    fixed = document.replace("rank: -1", "rank: 0")
    again = data(await gql(client, tenant, fixed), "first")
    assert again["id"] == shown_id(runtime, (await stored_events(runtime))[0])
    assert [e.event_id for e in await stored_events(runtime)] == ["e1", "e2", "e3"]


async def test_click_without_product_type_is_a_search_result_click(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    await gql(client, tenant, RECORD_CLICK, input={"documentId": "d", "rank": 0})
    [event] = await stored_events(runtime)
    assert event.product_type == "search"
    assert event.payload == {}


async def test_page_total_elements_is_the_result_count(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    page = {"size": 10, "totalElements": 0, "totalPages": 0, "number": 0}
    data(
        await gql(client, tenant, RECORD_SEARCH, input={"query": "q", "page": page}), "recordSearch"
    )
    [event] = await stored_events(runtime)
    assert event.result_count == 0
    assert await rollup_totals(runtime) == {"search": 1, "search_no_result": 1}


async def test_robot_user_agent_is_flagged(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    robot = tenant.token | {"User-Agent": GOOGLEBOT}
    data(await gql(client, robot, RECORD_SEARCH, input={"query": "crawl"}), "recordSearch")
    [event] = await stored_events(runtime)
    assert event.is_bot is True


async def test_feedback_links_to_its_search(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    search = data(
        await gql(client, tenant, RECORD_SEARCH, input={"query": "thumbs", "resultCount": 3}),
        "recordSearch",
    )
    feedback = {"queryId": search["queryId"], "documentId": "doc-1", "score": 1}
    result = data(
        await gql(client, tenant, record("recordFeedback"), input=feedback), "recordFeedback"
    )

    assert result["queryId"] == search["queryId"]
    stored_search, stored_feedback = await stored_events(runtime)
    assert stored_feedback.search_id == stored_search.id
    assert (stored_feedback.query, stored_feedback.result_count) == ("thumbs", 3)
    assert stored_search.clicked is False  # feedback is not a click


async def test_clicks_of_one_account_never_link_to_another_accounts_search(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, runtime: Runtime
) -> None:
    search = data(
        await gql(client, tenant, RECORD_SEARCH, input={"query": "private", "resultCount": 5}),
        "recordSearch",
    )
    click = {"queryId": search["queryId"], "documentId": "doc-1", "rank": 0}
    data(await gql(client, other_tenant, RECORD_CLICK, input=click), "recordClick")
    feedback = {"queryId": search["queryId"], "documentId": "doc-1", "score": 1}
    data(
        await gql(client, other_tenant, record("recordFeedback"), input=feedback),
        "recordFeedback",
    )

    stored_search, foreign_click, foreign_feedback = await stored_events(runtime)
    for foreign in (foreign_click, foreign_feedback):
        assert foreign.engine_id == await engine_id(runtime, other_tenant.hashid)
        assert (foreign.search_id, foreign.query, foreign.result_count) == (None, None, None)
    assert stored_search.clicked is False
    assert "search_clicked" not in await rollup_totals(runtime, tenant.hashid)
    assert await rollup_totals(runtime, other_tenant.hashid) == {
        "click": 1,
        "feedback": 1,
        "feedback_positive": 1,
    }


async def test_live_messages_are_built_only_when_someone_can_listen(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    published: list[tuple[str, list[dict[str, Any]]]] = []

    async def publish(channel: str, messages: list[dict[str, Any]]) -> None:
        published.append((channel, messages))

    monkeypatch.setattr(runtime.broker, "publish", publish)
    visit = {"input": {"store": "main"}}
    data(await gql(client, tenant, record("recordVisit"), **visit), "recordVisit")
    async with runtime.broker.subscribe([f"events:{'0' * 32}"]):  # another engine's
        data(await gql(client, tenant, record("recordVisit"), **visit), "recordVisit")
    assert published == []
    async with runtime.broker.subscribe([f"events:{tenant.hashid}"]):
        data(await gql(client, tenant, record("recordVisit"), **visit), "recordVisit")
    assert [(channel, len(messages)) for channel, messages in published] == [
        (f"events:{tenant.hashid}", 1)
    ]
