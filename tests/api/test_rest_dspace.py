"""DSpace's statistics endpoints: collect, DSpace 7+'s viewevents and searchevents, and errors."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from app.errors import Unavailable
from app.main import create_app
from app.services.runtime import Runtime, build_runtime
from app.storage.models import Engine, Event
from tests.conftest import BROWSER_UA, Tenant

ITEM = "43f9bb3e-f90d-458f-9858-7e4589481d18"
SCOPE = "a3e80c6d-a83f-4c35-9f27-8718598c6c17"
IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)

# The spec's page-view example, character for character. Its trailing comma makes it invalid JSON:
# DSpace's own Jackson parser refuses it too, so a client that sends it could never have worked
# against DSpace. We parse strictly and answer 400 (see the test below); the example as real
# clients send it, without the comma, is SPEC_VIEW.
SPEC_VIEW_AS_DOCUMENTED = """{
  "type": "view",
  "targetId": "43f9bb3e-f90d-458f-9858-7e4589481d18",
  "targetType": "item",
}"""
SPEC_VIEW = {"type": "view", "targetId": ITEM, "targetType": "item"}
SPEC_FILTERS = [
    {"filter": "title", "operator": "notcontains", "value": "dolor sit", "label": "dolor sit"},
    {
        "filter": "author",
        "operator": "authority",
        "value": "9zvxzdm4qru17or5a83wfgac",
        "label": "Amet, Consectetur",
    },
]
SPEC_SEARCH: dict[str, Any] = {
    "type": "search",
    "query": "Lorem ipsum",
    "scope": SCOPE,
    "configuration": "default",
    "appliedFilters": SPEC_FILTERS,
    "sort": {"by": "dc.date.issued", "order": "asc"},
    "page": {"size": 5, "totalElements": 14, "totalPages": 3, "number": 0},
}
# DSpace 7's RestContract examples (statistics-viewevents.md) for the split endpoints.
CONTRACT_VIEW = {
    "targetId": ITEM,
    "targetType": "item",
    "referrer": "https://demo7.dspace.org/search",
}
CONTRACT_SEARCH = {key: value for key, value in SPEC_SEARCH.items() if key != "type"}


async def stored(runtime: Runtime) -> list[tuple[Event, str]]:
    """Every stored event with its engine's hashid, oldest first."""
    async with runtime.database.sessions() as session:
        rows = await session.execute(
            select(Event, col(Engine.hashid))
            .join(Engine, col(Engine.id) == col(Event.engine_id))
            .order_by(col(Event.id))
        )
        return [(event, hashid) for event, hashid in rows]


def assert_spring_error(response: httpx.Response, status: int, message: str) -> None:
    """DSpace answers errors as Spring Boot does, naming the request's path."""
    assert response.status_code == status, response.text
    body = response.json()
    timestamp = datetime.fromisoformat(body.pop("timestamp"))
    assert abs(datetime.now(UTC) - timestamp) < timedelta(minutes=1)
    phrases = {400: "Bad Request", 404: "Not Found", 413: "Payload Too Large"}
    phrases |= {500: "Internal Server Error", 503: "Service Unavailable"}
    assert body == {
        "status": status,
        "error": phrases[status],
        "message": message,
        "path": response.request.url.path,
    }


async def test_statistics_root_answers_hal_links(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/statistics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/hal+json"
    assert response.json() == hal_links("http://testserver/api/statistics")


def hal_links(root: str) -> dict[str, Any]:
    return {
        "_links": {
            "viewevents": {"href": f"{root}/viewevents"},
            "searchevents": {"href": f"{root}/searchevents"},
            "self": {"href": root},
        }
    }


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "stats.example.org"}


@pytest.mark.parametrize(
    ("peer", "headers", "root"),
    [
        # Behind a TLS proxy: the links its clients can follow (an https page may not call http).
        ("10.1.2.3", FORWARDED, "https://stats.example.org/api/statistics"),
        ("10.1.2.3", {"X-Forwarded-Proto": "http, https"}, "https://testserver/api/statistics"),
        (
            "10.1.2.3",
            {"X-Forwarded-Host": "a.example, b.example:8443"},
            "http://b.example:8443/api/statistics",
        ),
        # Values that are not a scheme or a host are ignored.
        (
            "10.1.2.3",
            {"X-Forwarded-Proto": "javascript", "X-Forwarded-Host": "x/y@z"},
            "http://testserver/api/statistics",
        ),
        # From anyone but a trusted proxy the headers prove nothing.
        ("198.51.100.7", FORWARDED, "http://testserver/api/statistics"),
    ],
)
async def test_statistics_root_links_to_what_a_trusted_proxy_forwards(
    runtime: Runtime, peer: str, headers: dict[str, str], root: str
) -> None:
    behind_proxy = build_runtime(
        runtime.settings.model_copy(update={"trusted_proxies": ["10.0.0.0/8"]})
    )
    await behind_proxy.start()
    try:
        app = create_app(behind_proxy.settings, runtime=behind_proxy)
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/api/statistics", headers=headers)
    finally:
        await behind_proxy.stop()
    assert response.json() == hal_links(root)


async def test_spec_view_example_is_recorded(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    response = await client.post("/api/statistics/collect", json=SPEC_VIEW)
    assert response.status_code == 201
    assert response.content == b""
    [(event, hashid)] = await stored(runtime)
    # Anonymous: the first engine ever created, here the tenant's.
    assert hashid == tenant.hashid
    assert (event.kind, event.door, event.document_id) == ("view", "dspace", ITEM)
    assert event.payload == {"targetType": "item"}
    assert event.device == "desktop"


async def test_spec_view_example_as_documented_is_invalid_json(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    response = await client.post(
        "/api/statistics/collect",
        content=SPEC_VIEW_AS_DOCUMENTED,
        headers={"Content-Type": "application/json"},
    )
    assert_spring_error(response, 400, "the request body is not valid JSON")
    assert await stored(runtime) == []


async def test_spec_search_example_is_recorded(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    response = await client.post("/api/statistics/collect", json=SPEC_SEARCH)
    assert response.status_code == 201
    assert response.content == b""
    [(event, _)] = await stored(runtime)
    assert (event.kind, event.query, event.result_count) == ("search", "Lorem ipsum", 14)
    assert event.payload == {
        "scope": SCOPE,
        "configuration": "default",
        "appliedFilters": SPEC_FILTERS,
        "sort": {"by": "dc.date.issued", "order": "asc"},
        "page": {"size": 5, "totalElements": 14, "totalPages": 3, "number": 0},
    }


async def test_collect_search_needs_only_a_query(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    # The collect spec lists page and sort without requiring them, unlike searchevents.
    response = await client.post("/api/statistics/collect", json={"type": "search", "query": "x"})
    assert response.status_code == 201
    [(event, _)] = await stored(runtime)
    assert (event.query, event.result_count) == ("x", None)


async def test_contract_viewevents_example_is_recorded(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    response = await client.post("/api/statistics/viewevents", json=CONTRACT_VIEW)
    assert response.status_code == 201
    assert response.content == b""
    [(event, _)] = await stored(runtime)
    assert (event.kind, event.document_id) == ("view", ITEM)
    assert event.payload == {"targetType": "item", "referrer": "https://demo7.dspace.org/search"}


async def test_contract_searchevents_example_with_clicked_object_is_recorded(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    body = CONTRACT_SEARCH | {"dsoType": "item", "clickedObject": ITEM}
    response = await client.post("/api/statistics/searchevents", json=body)
    assert response.status_code == 201
    assert response.content == b""
    [(event, _)] = await stored(runtime)
    assert (event.kind, event.query, event.result_count) == ("search", "Lorem ipsum", 14)
    assert event.payload["clickedObject"] == ITEM
    assert event.payload["dsoType"] == "item"


async def test_angular_ui_request_with_xsrf_and_dspace_jwt_is_recorded(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    """The DSpace Angular UI sends its XSRF token and cookie, and a logged-in user's DSpace JWT."""
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-XSRF-TOKEN": "0b9a1c3e-5f7d-4a2b-8c6e-1d3f5a7b9c0e",
        "Cookie": "DSPACE-XSRF-COOKIE=0b9a1c3e-5f7d-4a2b-8c6e-1d3f5a7b9c0e",
        "Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJlaWQiOiJkc3BhY2UifQ.c2lnbmF0dXJl",
        "Origin": "https://demo.dspace.org",
    }
    body = CONTRACT_SEARCH | {"page": {**SPEC_SEARCH["page"], "totalElements": 0}}
    response = await client.post("/api/statistics/searchevents", json=body, headers=headers)
    assert response.status_code == 201, response.text
    response = await client.post("/api/statistics/viewevents", json=CONTRACT_VIEW, headers=headers)
    assert response.status_code == 201, response.text
    search, view = (event for event, _ in await stored(runtime))
    # totalElements 0: a search that found nothing.
    assert search.result_count == 0
    assert view.kind == "view"


async def test_device_is_derived_and_user_agent_never_stored(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    await client.post("/api/statistics/viewevents", json=CONTRACT_VIEW)
    await client.post(
        "/api/statistics/viewevents", json=CONTRACT_VIEW, headers={"User-Agent": IPHONE_UA}
    )
    events = [event for event, _ in await stored(runtime)]
    assert [event.device for event in events] == ["desktop", "mobile"]
    for event in events:
        kept = repr(event.model_dump())
        assert "iPhone" not in kept
        assert "Chrome/131" not in kept
        assert BROWSER_UA not in kept


COLLECT_400 = [
    pytest.param({"targetId": ITEM, "targetType": "item"}, "type is required", id="no-type"),
    pytest.param(SPEC_VIEW | {"type": "download"}, "type must be view or search", id="bad-type"),
    pytest.param(SPEC_VIEW | {"type": 1}, "type must be view or search", id="type-not-string"),
    pytest.param({"type": "view", "targetType": "item"}, "targetId is required", id="no-target"),
    pytest.param({"type": "view", "targetId": ITEM}, "targetType is required", id="no-type-of"),
    pytest.param(SPEC_VIEW | {"targetId": "42"}, "targetId must be a UUID", id="target-not-uuid"),
    pytest.param(SPEC_VIEW | {"targetId": 42}, "targetId must be a string", id="target-number"),
    # 36 characters that Python's uuid.UUID reads once it drops braces, hyphens and "urn:", but
    # no UUID as DSpace writes one (8-4-4-4-12 hexadecimal digits).
    pytest.param(
        SPEC_VIEW | {"targetId": "{{43f9bb3ef90d458f98587e4589481d18}}"},
        "targetId must be a UUID",
        id="target-in-braces",
    ),
    pytest.param(
        SPEC_VIEW | {"targetId": "urn:43f9bb3ef90d458f98587e4589481d18"},
        "targetId must be a UUID",
        id="target-urn",
    ),
    pytest.param(
        SPEC_VIEW | {"targetId": "43f9bb3ef90d458f98587e4589481d18----"},
        "targetId must be a UUID",
        id="target-hyphens-moved",
    ),
    pytest.param({"type": "search"}, "query is required", id="no-query"),
    pytest.param(SPEC_SEARCH | {"query": ""}, "query is required", id="empty-query"),
    pytest.param(SPEC_SEARCH | {"query": ["a"]}, "query must be a string", id="query-array"),
    pytest.param(
        SPEC_SEARCH | {"dsoType": "bitstream"},
        "dsoType must be one of all, item, community, collection",
        id="bad-dso-type",
    ),
    pytest.param(SPEC_SEARCH | {"scope": "site"}, "scope must be a UUID", id="scope-not-uuid"),
    pytest.param(
        SPEC_SEARCH | {"scope": "{a3e80c6d-a83f4c359f27-8718598c6c17}"},
        "scope must be a UUID",
        id="scope-in-braces",
    ),
    pytest.param(
        SPEC_SEARCH | {"configuration": 3}, "configuration must be a string", id="bad-config"
    ),
    pytest.param(
        SPEC_SEARCH | {"appliedFilters": {"filter": "title"}},
        "appliedFilters must be an array",
        id="filters-not-array",
    ),
    pytest.param(
        SPEC_SEARCH | {"appliedFilters": ["title"]},
        "appliedFilters[0] must be an object",
        id="filter-not-object",
    ),
    pytest.param(
        SPEC_SEARCH | {"appliedFilters": [SPEC_FILTERS[0], {"filter": "author", "operator": "x"}]},
        "appliedFilters[1].value is required",
        id="filter-without-value",
    ),
    pytest.param(
        SPEC_SEARCH | {"appliedFilters": [{**SPEC_FILTERS[0], "label": 1}]},
        "appliedFilters[0].label must be a string",
        id="filter-label-number",
    ),
    pytest.param(
        SPEC_SEARCH | {"appliedFilters": [SPEC_FILTERS[0]] * 101},
        "appliedFilters must hold at most 100 filters",
        id="too-many-filters",
    ),
    pytest.param(SPEC_SEARCH | {"page": 2}, "page must be an object", id="page-not-object"),
    pytest.param(
        SPEC_SEARCH | {"page": {"size": -1}},
        "page.size must be greater than or equal to 0",
        id="negative-size",
    ),
    pytest.param(
        SPEC_SEARCH | {"page": {"totalElements": -1}},
        "page.totalElements must be greater than or equal to 0",
        id="negative-total",
    ),
    pytest.param(
        SPEC_SEARCH | {"page": {"totalPages": -3}},
        "page.totalPages must be greater than or equal to 0",
        id="negative-pages",
    ),
    pytest.param(
        SPEC_SEARCH | {"page": {"number": -1}},
        "page.number must be greater than or equal to 0",
        id="negative-number",
    ),
    pytest.param(
        SPEC_SEARCH | {"page": {"size": 2.5}}, "page.size must be an integer", id="size-float"
    ),
    pytest.param(
        SPEC_SEARCH | {"page": {"totalElements": "14"}},
        "page.totalElements must be an integer",
        id="total-string",
    ),
    pytest.param(
        SPEC_SEARCH | {"page": {"number": True}}, "page.number must be an integer", id="bool"
    ),
    pytest.param(SPEC_SEARCH | {"sort": "asc"}, "sort must be an object", id="sort-not-object"),
    pytest.param(
        SPEC_SEARCH | {"sort": {"by": "dc.title", "order": "up"}},
        "sort.order must be asc or desc",
        id="bad-order",
    ),
    pytest.param(
        SPEC_SEARCH | {"sort": {"by": "dc.title"}}, "sort.order is required", id="no-order"
    ),
    pytest.param(
        SPEC_SEARCH | {"clickedObject": "item-1"},
        "clickedObject must be a UUID",
        id="clicked-not-uuid",
    ),
    pytest.param(
        {"type": "view", "targetId": "x", "targetType": 1},
        "targetType must be a string; targetId must be a UUID",
        id="every-problem",
    ),
]


@pytest.mark.parametrize(("body", "message"), COLLECT_400)
async def test_collect_rule_is_bad_request_and_stores_nothing(
    client: httpx.AsyncClient,
    tenant: Tenant,
    runtime: Runtime,
    body: dict[str, Any],
    message: str,
) -> None:
    response = await client.post("/api/statistics/collect", json=body)
    assert_spring_error(response, 400, message)
    assert await stored(runtime) == []


SPLIT_400 = [
    pytest.param("viewevents", {"targetType": "item"}, "targetId is required", id="view-target"),
    pytest.param("viewevents", {"targetId": ITEM}, "targetType is required", id="view-type"),
    pytest.param(
        "viewevents", CONTRACT_VIEW | {"referrer": 1}, "referrer must be a string", id="referrer"
    ),
    pytest.param(
        "searchevents", CONTRACT_SEARCH | {"query": ""}, "query is required", id="empty-query"
    ),
    pytest.param(
        "searchevents",
        {key: value for key, value in CONTRACT_SEARCH.items() if key != "page"},
        "page is required",
        id="no-page",
    ),
    pytest.param(
        "searchevents",
        {key: value for key, value in CONTRACT_SEARCH.items() if key != "sort"},
        "sort is required",
        id="no-sort",
    ),
    pytest.param(
        "searchevents",
        CONTRACT_SEARCH | {"sort": {"order": "desc"}},
        "sort.by is required",
        id="no-sort-by",
    ),
    pytest.param(
        "searchevents",
        {"query": "x"},
        "page is required; sort is required",
        id="every-problem",
    ),
    pytest.param(
        "searchevents",
        CONTRACT_SEARCH | {"clickedObject": 7},
        "clickedObject must be a string",
        id="clicked-number",
    ),
]


@pytest.mark.parametrize(("endpoint", "body", "message"), SPLIT_400)
async def test_split_endpoint_rule_is_bad_request_and_stores_nothing(
    client: httpx.AsyncClient,
    tenant: Tenant,
    runtime: Runtime,
    endpoint: str,
    body: dict[str, Any],
    message: str,
) -> None:
    response = await client.post(f"/api/statistics/{endpoint}", json=body)
    assert_spring_error(response, 400, message)
    assert await stored(runtime) == []


MALFORMED = [
    pytest.param({"Content-Type": "text/plain"}, b"{}", "Content-Type must be application/json"),
    pytest.param({}, b'{"type": "view"', "the request body is not valid JSON", id="truncated"),
    pytest.param({}, b"", "the request body is empty: expected a JSON object", id="empty"),
    pytest.param({}, b"[]", "the request body must be a JSON object", id="array"),
    pytest.param({}, b'"view"', "the request body must be a JSON object", id="string"),
    pytest.param({}, b"\xff\xfe", "the request body is not valid JSON", id="not-utf8"),
    pytest.param({}, b'{"page": NaN}', "the request body is not valid JSON", id="nan"),
]


@pytest.mark.parametrize(("headers", "content", "message"), MALFORMED)
@pytest.mark.parametrize("endpoint", ["collect", "viewevents", "searchevents"])
async def test_malformed_body_is_bad_request(
    client: httpx.AsyncClient,
    tenant: Tenant,
    runtime: Runtime,
    endpoint: str,
    headers: dict[str, str],
    content: bytes,
    message: str,
) -> None:
    headers = {"Content-Type": "application/json"} | headers
    response = await client.post(f"/api/statistics/{endpoint}", content=content, headers=headers)
    assert_spring_error(response, 400, message)
    assert await stored(runtime) == []


async def test_without_any_engine_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/statistics/viewevents", json=CONTRACT_VIEW)
    assert_spring_error(response, 404, "no engine exists yet")


async def test_body_over_the_limit_is_payload_too_large(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    limit = runtime.settings.max_body_bytes
    body = b'{"query": "' + b"x" * limit + b'"}'
    response = await client.post(
        "/api/statistics/searchevents",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert_spring_error(response, 413, f"the request body is over {limit} bytes")
    assert await stored(runtime) == []


async def test_unavailable_storage_says_when_to_retry(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def storage_down(**_: object) -> None:
        raise Unavailable(retry_after=3)

    monkeypatch.setattr("app.rest.dspace.record_events", storage_down)
    response = await client.post("/api/statistics/viewevents", json=CONTRACT_VIEW)
    assert_spring_error(response, 503, "Service unavailable, retry later")
    assert response.headers["retry-after"] == "3"


async def test_unexpected_error_is_masked_and_logged(
    client: httpx.AsyncClient,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(**_: object) -> None:
        raise RuntimeError("secret detail of the failure")

    monkeypatch.setattr("app.rest.dspace.record_events", broken)
    with caplog.at_level(logging.ERROR, logger="app.rest.dialect"):
        response = await client.post("/api/statistics/viewevents", json=CONTRACT_VIEW)
    assert_spring_error(response, 500, "Internal error")
    assert "secret detail" not in response.text
    [record] = caplog.records
    assert record.exc_info is not None
    assert "secret detail of the failure" in str(record.exc_info[1])


# What the DSpace Angular UI's browser asks before each POST: its log interceptor adds
# X-Referrer always and X-Correlation-ID when the user consented.
PREFLIGHT = {
    "Origin": "https://demo.dspace.org",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type,x-correlation-id,x-referrer,x-xsrf-token",
}


@pytest.mark.parametrize("endpoint", ["collect", "viewevents", "searchevents"])
async def test_browser_preflight_is_allowed(client: httpx.AsyncClient, endpoint: str) -> None:
    response = await client.options(f"/api/statistics/{endpoint}", headers=PREFLIGHT)
    assert response.status_code == 200
    # With credentials allowed, the origin is echoed: browsers refuse "*" with credentials.
    assert response.headers["access-control-allow-origin"] == "https://demo.dspace.org"
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("content-type", "x-correlation-id", "x-referrer", "x-xsrf-token"):
        assert header in allowed
    assert "x-xsrf-token" in allowed


async def test_cross_origin_post_exposes_the_cors_headers(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        "/api/statistics/viewevents",
        json=CONTRACT_VIEW,
        headers={"Origin": "https://demo.dspace.org"},
    )
    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] == "https://demo.dspace.org"


async def test_preflight_allows_the_dspace_ui_credentials(client: httpx.AsyncClient) -> None:
    response = await client.options("/api/statistics/searchevents", headers=PREFLIGHT)
    assert response.headers.get("access-control-allow-credentials") == "true"
    assert response.headers["access-control-allow-origin"] == "https://demo.dspace.org"
