"""Doofinder's ``POST /api/v2/stats/visit``: every documented field, credential and error."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select
from sqlmodel import col

from app.errors import TooManyRequests
from app.services import accounts
from app.services.runtime import Runtime
from app.storage.models import Engine, Event
from tests.api.helpers import CHALLENGE
from tests.conftest import BROWSER_UA, Tenant

VISIT = "/api/v2/stats/visit"
IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
WEEK = 7 * 24 * 3600
UNKNOWN_HASHID = "d8fdeab7fce96a19d3fc7b0ca7a1e98b"  # the spec's example hashid
REGISTERED = {"status": "registered"}


async def stored(runtime: Runtime) -> list[tuple[Event, str]]:
    """Every stored event with its engine's hashid, oldest first."""
    async with runtime.database.sessions() as session:
        rows = await session.execute(
            select(Event, col(Engine.hashid))
            .join(Engine, col(Engine.id) == col(Event.engine_id))
            .order_by(col(Event.id))
        )
        return [(event, hashid) for event, hashid in rows]


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signed(key: str, *, name: str, issued: float, expires: float) -> str:
    return jwt.encode({"iat": int(issued), "exp": int(expires), "name": name}, key, "HS256")


async def test_visit_with_every_field_is_registered(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    body = {
        "store": "0f6d2bd8-3b1e-4b4f-9f43-3f1d8b0c2a11",
        "hashid": tenant.hashid,
        "session_id": "a" * 32,
        "user_id": "u" * 36,
        "dfid": f"{tenant.hashid}@product@42",
        "page_type": "product",
        "url": "https://shop.example.com/p/42",
        "ip": "203.0.113.7",
        "user_agent": "DeprecatedClientAgent/1.0",
    }
    response = await client.post(VISIT, json=body, headers=tenant.token)
    assert response.status_code == 200
    assert response.json() == REGISTERED
    [(event, hashid)] = await stored(runtime)
    assert hashid == tenant.hashid
    assert (event.kind, event.door, event.device) == ("visit", "doofinder", "desktop")
    assert (event.session_id, event.user_id) == ("a" * 32, "u" * 36)
    assert event.document_id == f"{tenant.hashid}@product@42"
    assert event.payload == {
        "store": "0f6d2bd8-3b1e-4b4f-9f43-3f1d8b0c2a11",
        "url": "https://shop.example.com/p/42",
        "pageType": "product",
    }
    # The deprecated fields are detected by the server, never taken from the body or kept.
    kept = repr(event.model_dump())
    assert "203.0.113.7" not in kept
    assert "DeprecatedClientAgent" not in kept


async def test_visit_without_hashid_goes_to_the_default_engine(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    await accounts.create_engine(database=runtime.database, account=tenant.account)
    response = await client.post(
        VISIT, json={"store": "s", "session_id": None}, headers=tenant.token
    )
    assert response.status_code == 200
    assert response.json() == REGISTERED
    [(event, hashid)] = await stored(runtime)
    assert hashid == tenant.hashid
    assert event.session_id is None


async def test_hashid_names_the_engine(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    second = await accounts.create_engine(database=runtime.database, account=tenant.account)
    response = await client.post(
        VISIT, json={"store": "s", "hashid": second.hashid}, headers=tenant.token
    )
    assert response.status_code == 200
    [(_, hashid)] = await stored(runtime)
    assert hashid == second.hashid


async def test_engine_of_another_account_is_access_denied(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, runtime: Runtime
) -> None:
    body = {"store": "s", "hashid": other_tenant.hashid}
    for owners_events in range(2):  # refused before its owner used it, and after (known then)
        response = await client.post(VISIT, json=body, headers=tenant.token)
        assert response.status_code == 403
        assert response.json() == error(
            "access_denied", f"engine {other_tenant.hashid} belongs to another account"
        )
        stored_hashids = [hashid for _, hashid in await stored(runtime)]
        assert stored_hashids == [other_tenant.hashid] * owners_events
        own = await client.post(VISIT, json=body, headers=other_tenant.token)
        assert own.status_code == 200


async def test_unknown_engine_is_not_found(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    body = {"store": "s", "hashid": UNKNOWN_HASHID}
    response = await client.post(VISIT, json=body, headers=tenant.token)
    assert response.status_code == 404
    assert response.json() == error("not_found", f"search engine {UNKNOWN_HASHID} not found")
    assert await stored(runtime) == []


async def test_device_is_derived_and_user_agent_never_stored(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    await client.post(VISIT, json={"store": "s"}, headers=tenant.token)
    await client.post(VISIT, json={"store": "s"}, headers=tenant.token | {"User-Agent": IPHONE_UA})
    events = [event for event, _ in await stored(runtime)]
    assert [event.device for event in events] == ["desktop", "mobile"]
    for event in events:
        kept = repr(event.model_dump())
        assert "iPhone" not in kept
        assert BROWSER_UA not in kept


BAD_VISITS = [
    pytest.param({}, "store is required", id="no-store"),
    pytest.param({"store": None}, "store is required", id="null-store"),
    pytest.param({"store": ""}, "store is required", id="empty-store"),
    pytest.param({"store": "s" * 37}, "store must be at most 36 characters", id="long-store"),
    pytest.param({"store": 12}, "store must be a string", id="store-number"),
    pytest.param(
        {"store": "s", "hashid": "D8FDEAB7FCE96A19D3FC7B0CA7A1E98B"},
        "hashid must be 32 lowercase hexadecimal characters",
        id="hashid-uppercase",
    ),
    pytest.param(
        {"store": "s", "hashid": "d8fdeab7"},
        "hashid must be 32 lowercase hexadecimal characters",
        id="hashid-short",
    ),
    pytest.param({"store": "s", "hashid": 1}, "hashid must be a string", id="hashid-number"),
    pytest.param(
        {"store": "s", "session_id": "s" * 33},
        "session_id must be at most 32 characters",
        id="long-session",
    ),
    pytest.param(
        {"store": "s", "session_id": 5}, "session_id must be a string", id="session-number"
    ),
    pytest.param(
        {"store": "s", "user_id": "u" * 37},
        "user_id must be at most 36 characters",
        id="long-user",
    ),
    pytest.param({"store": "s", "user_id": ["u"]}, "user_id must be a string", id="user-array"),
    pytest.param({"store": "s", "dfid": {}}, "dfid must be a string", id="dfid-object"),
    pytest.param({"store": "s", "page_type": 1}, "page_type must be a string", id="page-type"),
    pytest.param({"store": "s", "url": False}, "url must be a string", id="url-bool"),
    pytest.param({"store": "s", "ip": 127}, "ip must be a string", id="ip-number"),
    pytest.param({"store": "s", "user_agent": 1}, "user_agent must be a string", id="ua-number"),
    pytest.param(
        {"store": "", "session_id": "s" * 33, "hashid": "x"},
        "session_id must be at most 32 characters; store is required; "
        "hashid must be 32 lowercase hexadecimal characters",
        id="every-problem",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_VISITS)
async def test_invalid_visit_is_bad_params_and_stores_nothing(
    client: httpx.AsyncClient,
    tenant: Tenant,
    runtime: Runtime,
    body: dict[str, Any],
    message: str,
) -> None:
    response = await client.post(VISIT, json=body, headers=tenant.token)
    assert response.status_code == 400
    assert response.json() == error("bad_params", message)
    assert await stored(runtime) == []


MALFORMED = [
    pytest.param({"Content-Type": "text/plain"}, b"{}", "Content-Type must be application/json"),
    pytest.param({}, b"{'store': 's'}", "the request body is not valid JSON", id="single-quotes"),
    pytest.param({}, b"", "the request body is empty: expected a JSON object", id="empty"),
    pytest.param({}, b'[{"store": "s"}]', "the request body must be a JSON object", id="array"),
    pytest.param({}, b"null", "the request body must be a JSON object", id="null"),
]


@pytest.mark.parametrize(("headers", "content", "message"), MALFORMED)
async def test_malformed_body_is_bad_params(
    client: httpx.AsyncClient,
    tenant: Tenant,
    runtime: Runtime,
    headers: dict[str, str],
    content: bytes,
    message: str,
) -> None:
    headers = tenant.token | {"Content-Type": "application/json"} | headers
    response = await client.post(VISIT, content=content, headers=headers)
    assert response.status_code == 400
    assert response.json() == error("bad_params", message)
    assert await stored(runtime) == []


async def test_valid_jwt_is_accepted(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    now = time.time()
    token = signed(tenant.api_key, name=tenant.account, issued=now, expires=now + 3600)
    response = await client.post(VISIT, json={"store": "s"}, headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == REGISTERED
    [(_, hashid)] = await stored(runtime)
    assert hashid == tenant.hashid


@pytest.mark.parametrize(
    ("case", "seconds_from_now", "other_claims"),
    [
        # A client whose clock runs ahead of the server's.
        ("issued-seconds-ahead", {"iat": 20, "exp": 3600}, {}),
        ("valid-from-seconds-ahead", {"iat": 0, "nbf": 20, "exp": 3600}, {}),
        # Claims Doofinder does not define are the client's own.
        ("audience", {"iat": 0, "exp": 3600}, {"aud": "https://api.doofinder.com"}),
        ("issuer", {"iat": 0, "exp": 3600}, {"iss": "shop-backend"}),
        # Of whatever type: a shop's own user number as the subject, a counter as the id.
        ("numeric-subject", {"iat": 0, "exp": 3600}, {"sub": 1042}),
        ("numeric-token-id", {"iat": 0, "exp": 3600}, {"jti": 7}),
        ("audience-list", {"iat": 0, "exp": 3600}, {"aud": ["doofinder", "shop"]}),
    ],
)
async def test_jwt_within_clock_skew_or_with_other_claims_is_accepted(
    client: httpx.AsyncClient,
    tenant: Tenant,
    case: str,
    seconds_from_now: dict[str, int],
    other_claims: dict[str, object],
) -> None:
    now = int(time.time())
    times = {claim: now + seconds for claim, seconds in seconds_from_now.items()}
    token = jwt.encode(times | other_claims | {"name": tenant.account}, tenant.api_key, "HS256")
    response = await client.post(VISIT, json={"store": "s"}, headers=bearer(token))
    assert response.status_code == 200, case


def bad_credentials(tenant: Tenant) -> dict[str, tuple[dict[str, str], str]]:
    """Each way a credential fails, with the message it earns."""
    now = time.time()
    wrong_key = signed("f" * 40, name=tenant.account, issued=now, expires=now + 60)
    expired = signed(tenant.api_key, name=tenant.account, issued=now - 7200, expires=now - 3600)
    too_long = signed(tenant.api_key, name=tenant.account, issued=now, expires=now + WEEK + 60)
    unnamed = jwt.encode({"iat": int(now), "exp": int(now) + 60}, tenant.api_key, "HS256")
    ahead = signed(tenant.api_key, name=tenant.account, issued=now + 300, expires=now + 3600)
    just_expired = signed(tenant.api_key, name=tenant.account, issued=now - 600, expires=now - 90)
    seconds_ago = signed(tenant.api_key, name=tenant.account, issued=now - 600, expires=now - 5)
    return {
        "missing": ({}, "Authentication required"),
        "unknown-key": ({"Authorization": "Token " + "0" * 40}, "Invalid API key"),
        "no-credential": ({"Authorization": "Token"}, "Authentication required"),
        "basic-scheme": ({"Authorization": "Basic YWNtZTpzZWNyZXQ="}, "Authentication required"),
        "malformed-jwt": (bearer("not.a.jwt"), "Malformed token"),
        "wrong-key": (bearer(wrong_key), "Invalid or expired token"),
        "expired": (bearer(expired), "Invalid or expired token"),
        "over-a-week": (bearer(too_long), "Invalid or expired token"),
        "no-name": (bearer(unnamed), "The token must carry a name claim"),
        "issued-minutes-ahead": (bearer(ahead), "Invalid or expired token"),
        "expired-past-the-skew": (bearer(just_expired), "Invalid or expired token"),
        # The skew is for a clock ahead at issue, not a minute of life after expiry.
        "expired-seconds-ago": (bearer(seconds_ago), "Invalid or expired token"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "unknown-key",
        "no-credential",
        "basic-scheme",
        "malformed-jwt",
        "wrong-key",
        "expired",
        "over-a-week",
        "no-name",
        "issued-minutes-ahead",
        "expired-past-the-skew",
        "expired-seconds-ago",
    ],
)
async def test_bad_credential_is_not_authenticated(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime, case: str
) -> None:
    headers, message = bad_credentials(tenant)[case]
    response = await client.post(VISIT, json={"store": "s"}, headers=headers)
    assert response.status_code == 401
    assert response.json() == error("not_authenticated", message)
    # RFC 9110: a 401 names the schemes that would be accepted.
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert await stored(runtime) == []


async def test_credential_is_checked_before_the_body(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(VISIT, content=b"not json")
    assert response.status_code == 401
    assert response.json() == error("not_authenticated", "Authentication required")


async def test_rate_limit_says_when_to_retry(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def over_limit(**_: object) -> None:
        raise TooManyRequests(retry_after=1)

    monkeypatch.setattr("app.rest.doofinder.record_events", over_limit)
    response = await client.post(VISIT, json={"store": "s"}, headers=tenant.token)
    assert response.status_code == 429
    assert response.json() == error("too_many_requests", "Too many requests")
    assert response.headers["retry-after"] == "1"


async def test_unexpected_error_is_masked(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(**_: object) -> None:
        raise KeyError("secret detail")

    monkeypatch.setattr("app.rest.doofinder.record_events", broken)
    response = await client.post(VISIT, json={"store": "s"}, headers=tenant.token)
    assert response.status_code == 500
    assert response.json() == error("internal_error", "Internal error")
