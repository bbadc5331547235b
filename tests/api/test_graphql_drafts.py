"""Every field of every event input reaches the stored event through its draft."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from app.services.runtime import Runtime
from tests.api.helpers import RECORD_EVENTS, data, gql, stored_events
from tests.conftest import Tenant


async def test_every_field_and_nesting_arrives(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    search = {
        "query": "lorem",
        "resultCount": 0,
        "scope": "a3e80c6d-a83f-4c35-9f27-8718598c6c17",
        "dsoType": "item",
        "configuration": "default",
        "appliedFilters": [{"filter": "title", "operator": "contains", "value": "x"}],
        "sort": {"by": "dc.date.issued", "order": "asc"},
        "page": {"size": 5, "totalElements": 0, "totalPages": 0, "number": 0},
        "occurredAt": "2025-01-02T03:04:05+01:00",
        "eventId": "e-1",
        "sessionId": "s",
        "userId": "u",
    }
    click = {
        "documentId": "d",
        "rank": 3,
        "page": 1,
        "event": "ui",
        "productType": "BANNER",
        "contentSourceId": "cs",
    }
    body = await gql(client, tenant, RECORD_EVENTS, input=[{"search": search}, {"click": click}])
    assert len(data(body, "recordEvents")) == 2
    stored_search, stored_click = await stored_events(runtime)
    assert stored_search.occurred_at == datetime(2025, 1, 2, 2, 4, 5, tzinfo=UTC)
    assert (stored_search.event_id, stored_search.session_id, stored_search.user_id) == (
        "e-1",
        "s",
        "u",
    )
    assert stored_search.result_count == 0
    assert stored_search.payload["appliedFilters"] == [
        {"filter": "title", "operator": "contains", "value": "x", "label": None}
    ]
    assert stored_search.payload["sort"] == {"by": "dc.date.issued", "order": "asc"}
    assert stored_search.payload["page"] == {
        "size": 5,
        "totalElements": 0,
        "totalPages": 0,
        "number": 0,
    }
    assert stored_click.product_type == "banner"
    assert (stored_click.rank, stored_click.page, stored_click.content_source_id) == (3, 1, "cs")
    assert stored_click.payload["event"] == "ui"
