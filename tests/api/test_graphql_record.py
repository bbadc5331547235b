"""Recording every event kind through GraphQL mutations."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from app.services.runtime import Runtime
from app.storage.models import Event
from tests.conftest import Tenant

RECORD_SEARCH = """
mutation($input: SearchInput!) {
  recordSearch(input: $input) { id status duplicate queryId }
}"""
RECORD_CLICK = """
mutation($input: ClickInput!) {
  recordClick(input: $input) { id status duplicate queryId }
}"""


async def gql(
    client: httpx.AsyncClient, tenant: Tenant | None, query: str, **variables: Any
) -> dict[str, Any]:
    headers = tenant.token if tenant else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def stored_events(runtime: Runtime) -> list[Event]:
    async with runtime.database.sessions() as session:
        return list((await session.execute(select(Event).order_by(col(Event.id)))).scalars())


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
