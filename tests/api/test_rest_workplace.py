"""Workplace Search's ``POST /api/ws/v1/analytics/event``: clicks and feedback, every rule."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select
from sqlmodel import col

from app.services.runtime import Runtime
from app.storage.models import Engine, Event
from tests.api.helpers import CHALLENGE
from tests.conftest import BROWSER_UA, Tenant

EVENT = "/api/ws/v1/analytics/event"
IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
WEEK = 7 * 24 * 3600

# The spec's four request examples, as they are.
CLICK_EXAMPLES = [
    {
        "type": "click",
        "query_id": "2992570ab570b581ac6c457bddf68835",
        "page": 1,
        "content_source_id": "5f91bf7888f9297b02a3d80c",
        "document_id": "product-123",
        "rank": 0,
        "event": "app",
    },
    {
        "type": "click",
        "query_id": "4553570bc681c681ac6c457beed79946",
        "page": 1,
        "content_source_id": "6e82ce8999e8388c13b4e91d",
        "document_id": "product-456",
        "rank": 5,
        "event": "ui",
    },
]
FEEDBACK_EXAMPLES = [
    {
        "type": "feedback",
        "query_id": "2992570ab570b581ac6c457bddf68835",
        "page": 1,
        "content_source_id": "5f91bf7888f9297b02a3d80c",
        "document_id": "product-123",
        "rank": 0,
        "score": 1,
    },
    {
        "type": "feedback",
        "query_id": "4553570bc681c681ac6c457beed79946",
        "page": 1,
        "content_source_id": "6e82ce8999e8388c13b4e91d",
        "document_id": "product-456",
        "rank": 5,
        "score": -1,
    },
]
CLICK, FEEDBACK = CLICK_EXAMPLES[0], FEEDBACK_EXAMPLES[0]


async def stored(runtime: Runtime) -> list[tuple[Event, str]]:
    """Every stored event with its engine's hashid, oldest first."""
    async with runtime.database.sessions() as session:
        rows = await session.execute(
            select(Event, col(Engine.hashid))
            .join(Engine, col(Engine.id) == col(Event.engine_id))
            .order_by(col(Event.id))
        )
        return [(event, hashid) for event, hashid in rows]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signed(key: str, *, name: str, issued: float, expires: float) -> str:
    return jwt.encode({"iat": int(issued), "exp": int(expires), "name": name}, key, "HS256")


def without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in body.items() if name != key}


@pytest.mark.parametrize("body", CLICK_EXAMPLES, ids=["click-app", "click-ui"])
async def test_spec_click_example_is_recorded(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime, body: dict[str, Any]
) -> None:
    # Workplace clients send ``Bearer <access token>``; an opaque API key is such a token here.
    response = await client.post(EVENT, json=body, headers=bearer(tenant.api_key))
    assert response.status_code == 200
    assert response.content == b""
    [(event, hashid)] = await stored(runtime)
    assert hashid == tenant.hashid
    assert (event.kind, event.door, event.device) == ("click", "workplace", "desktop")
    assert (event.query_id, event.document_id) == (body["query_id"], body["document_id"])
    assert (event.content_source_id, event.page, event.rank) == (
        body["content_source_id"],
        body["page"],
        body["rank"],
    )
    assert event.payload == {"event": body["event"]}


@pytest.mark.parametrize("body", FEEDBACK_EXAMPLES, ids=["positive", "negative"])
async def test_spec_feedback_example_is_recorded(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime, body: dict[str, Any]
) -> None:
    response = await client.post(EVENT, json=body, headers=bearer(tenant.api_key))
    assert response.status_code == 200
    assert response.content == b""
    [(event, _)] = await stored(runtime)
    assert (event.kind, event.score, event.rank, event.page) == (
        "feedback",
        body["score"],
        body["rank"],
        body["page"],
    )
    assert (event.query_id, event.document_id, event.content_source_id) == (
        body["query_id"],
        body["document_id"],
        body["content_source_id"],
    )


async def test_click_links_to_the_search_it_names(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    search = await client.post(
        "/graphql",
        json={
            "query": "mutation($i: SearchInput!) { recordSearch(input: $i) { queryId } }",
            "variables": {"i": {"query": "lorem", "resultCount": 3}},
        },
        headers=tenant.token,
    )
    query_id = search.json()["data"]["recordSearch"]["queryId"]
    response = await client.post(EVENT, json=CLICK | {"query_id": query_id}, headers=tenant.token)
    assert response.status_code == 200
    first, click = (event for event, _ in await stored(runtime))
    assert click.search_id == first.id
    assert click.query == "lorem"


async def test_token_scheme_and_valid_jwt_are_accepted(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    now = time.time()
    token = signed(tenant.api_key, name=tenant.account, issued=now, expires=now + 3600)
    assert (await client.post(EVENT, json=CLICK, headers=tenant.token)).status_code == 200
    assert (await client.post(EVENT, json=FEEDBACK, headers=bearer(token))).status_code == 200
    assert [event.kind for event, _ in await stored(runtime)] == ["click", "feedback"]


async def test_device_is_derived_and_user_agent_never_stored(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    await client.post(EVENT, json=CLICK, headers=tenant.token)
    await client.post(EVENT, json=CLICK, headers=tenant.token | {"User-Agent": IPHONE_UA})
    events = [event for event, _ in await stored(runtime)]
    assert [event.device for event in events] == ["desktop", "mobile"]
    for event in events:
        kept = repr(event.model_dump())
        assert "iPhone" not in kept
        assert BROWSER_UA not in kept


BAD_EVENTS = [
    pytest.param(without(CLICK, "type"), ["type is required"], id="no-type"),
    pytest.param(CLICK | {"type": "view"}, ["type must be click or feedback"], id="bad-type"),
    pytest.param(CLICK | {"type": ["click"]}, ["type must be click or feedback"], id="type-list"),
    pytest.param(
        {"type": "conversion", "rank": "1"},
        ["type must be click or feedback", "rank must be an integer"],
        id="bad-type-and-more",
    ),
    *(
        pytest.param(without(CLICK, key), [f"{key} is required"], id=f"click-no-{key}")
        for key in ("query_id", "document_id", "content_source_id", "page", "rank", "event")
    ),
    *(
        pytest.param(without(FEEDBACK, key), [f"{key} is required"], id=f"feedback-no-{key}")
        for key in ("query_id", "document_id", "content_source_id", "page", "rank", "score")
    ),
    pytest.param(CLICK | {"document_id": ""}, ["document_id is required"], id="empty-document"),
    pytest.param(CLICK | {"page": 0}, ["page must be greater than or equal to 1"], id="page-zero"),
    pytest.param(
        FEEDBACK | {"page": -2}, ["page must be greater than or equal to 1"], id="page-negative"
    ),
    pytest.param(
        CLICK | {"rank": -1}, ["rank must be greater than or equal to 0"], id="rank-negative"
    ),
    pytest.param(
        FEEDBACK | {"rank": -1}, ["rank must be greater than or equal to 0"], id="fb-rank"
    ),
    pytest.param(FEEDBACK | {"score": 0}, ["score must be 1 or -1"], id="score-zero"),
    pytest.param(FEEDBACK | {"score": 5}, ["score must be 1 or -1"], id="score-five"),
    pytest.param(FEEDBACK | {"score": 1.0}, ["score must be an integer"], id="score-float"),
    pytest.param(FEEDBACK | {"score": "1"}, ["score must be an integer"], id="score-string"),
    pytest.param(CLICK | {"page": "1"}, ["page must be an integer"], id="page-string"),
    pytest.param(CLICK | {"rank": True}, ["rank must be an integer"], id="rank-bool"),
    pytest.param(CLICK | {"query_id": 7}, ["query_id must be a string"], id="query-id-number"),
    pytest.param(CLICK | {"event": {}}, ["event must be a string"], id="event-object"),
    pytest.param(
        CLICK | {"query_id": "q" * 65}, ["query_id must be at most 64 characters"], id="long-qid"
    ),
    pytest.param(
        {"type": "click", "page": 0, "rank": -1, "document_id": 5},
        [
            "document_id must be a string",
            "query_id is required",
            "content_source_id is required",
            "event is required",
            "rank must be greater than or equal to 0",
            "page must be greater than or equal to 1",
        ],
        id="every-problem",
    ),
    pytest.param(
        {"type": "feedback"},
        [
            "document_id is required",
            "score is required",
            "query_id is required",
            "content_source_id is required",
            "page is required",
            "rank is required",
        ],
        id="empty-feedback",
    ),
]


@pytest.mark.parametrize(("body", "errors"), BAD_EVENTS)
async def test_invalid_event_lists_every_problem_and_stores_nothing(
    client: httpx.AsyncClient,
    tenant: Tenant,
    runtime: Runtime,
    body: dict[str, Any],
    errors: list[str],
) -> None:
    response = await client.post(EVENT, json=body, headers=tenant.token)
    assert response.status_code == 400
    assert response.json() == {"errors": errors}
    assert await stored(runtime) == []


MALFORMED = [
    pytest.param(
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"type=click",
        "Content-Type must be application/json",
        id="form",
    ),
    pytest.param({}, b'{"type": "click",}', "the request body is not valid JSON", id="comma"),
    pytest.param({}, b"   ", "the request body is empty: expected a JSON object", id="blank"),
    pytest.param({}, b"42", "the request body must be a JSON object", id="number"),
]


@pytest.mark.parametrize(("headers", "content", "message"), MALFORMED)
async def test_malformed_body_is_bad_request(
    client: httpx.AsyncClient,
    tenant: Tenant,
    runtime: Runtime,
    headers: dict[str, str],
    content: bytes,
    message: str,
) -> None:
    headers = tenant.token | {"Content-Type": "application/json"} | headers
    response = await client.post(EVENT, content=content, headers=headers)
    assert response.status_code == 400
    assert response.json() == {"errors": [message]}
    assert await stored(runtime) == []


def bad_credentials(tenant: Tenant) -> dict[str, tuple[dict[str, str], str]]:
    """Each way a credential fails, with the message it earns."""
    now = time.time()
    wrong_key = signed("f" * 40, name=tenant.account, issued=now, expires=now + 60)
    expired = signed(tenant.api_key, name=tenant.account, issued=now - 7200, expires=now - 3600)
    too_long = signed(tenant.api_key, name=tenant.account, issued=now, expires=now + WEEK + 60)
    return {
        "missing": ({}, "Authentication required"),
        "unknown-key": (bearer("7ea05c8bd50ab5c75d2b71adbcb9ae71c4034d7a"), "Invalid API key"),
        "unknown-token-key": ({"Authorization": "Token " + "0" * 40}, "Invalid API key"),
        "empty-bearer": ({"Authorization": "Bearer "}, "Authentication required"),
        "basic-scheme": ({"Authorization": "Basic YWNtZTpzZWNyZXQ="}, "Authentication required"),
        "malformed-jwt": (bearer("a.b.c"), "Malformed token"),
        "wrong-key": (bearer(wrong_key), "Invalid or expired token"),
        "expired": (bearer(expired), "Invalid or expired token"),
        "over-a-week": (bearer(too_long), "Invalid or expired token"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "unknown-key",
        "unknown-token-key",
        "empty-bearer",
        "basic-scheme",
        "malformed-jwt",
        "wrong-key",
        "expired",
        "over-a-week",
    ],
)
async def test_bad_credential_is_unauthorized(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime, case: str
) -> None:
    headers, message = bad_credentials(tenant)[case]
    response = await client.post(EVENT, json=CLICK, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"errors": [message]}
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert await stored(runtime) == []


async def test_credential_is_checked_before_the_body(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(EVENT, json={"type": "nonsense"})
    assert response.status_code == 401
    assert response.json() == {"errors": ["Authentication required"]}


async def test_unexpected_error_is_masked(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(**_: object) -> None:
        raise ValueError("secret detail")

    monkeypatch.setattr("app.rest.workplace.record_events", broken)
    response = await client.post(EVENT, json=CLICK, headers=tenant.token)
    assert response.status_code == 500
    assert response.json() == {"errors": ["Internal error"]}
