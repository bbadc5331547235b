"""Tenancy on every door: an account reads and writes its own engines only (403 for another
account's, 404 for none), and a JWT naming another account than the key that signed it is a 401.
The table of who may do what is docs/authorization.md."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.policies import EnginePolicy
from app.errors import NotFound
from app.main import create_app
from app.services import accounts
from app.services.runtime import Runtime
from app.storage import directory
from app.storage.directory import EngineRecord
from tests.api.helpers import RECORD_EVENTS, data, engine_id, gql, stored_events
from tests.conftest import Tenant, make_tenant

UNKNOWN = "0123456789abcdef0123456789abcdef"
VIEW = {"type": "view", "targetId": "43f9bb3e-f90d-458f-9858-7e4589481d18", "targetType": "item"}
STATS = """query($e: [ID!]) { stats(from: "2025-01-01", to: "2025-01-02", engines: $e) {
  searches { totalCount } } }"""
RECORD = 'mutation($e: ID) { recordVisit(input: {store: "main", engine: $e}) { id } }'
BATCH = """mutation($e: ID) { recordEvents(input: [{visit: {store: "a"}},
  {visit: {store: "b", engine: $e}}]) { id } }"""
FORGET = 'mutation($e: ID!) { forgetUser(userId: "u", engines: [$e]) { deletedEvents } }'

Call = Callable[[httpx.AsyncClient, dict[str, str], str], Awaitable[tuple[int, str]]]


def doofinder(response: httpx.Response) -> tuple[int, str]:
    code: str = response.json()["error"]["code"] if response.status_code != 200 else "ok"
    return response.status_code, code


def graphql(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    if "errors" not in body:
        return response.status_code, "ok"
    codes = {error["extensions"]["code"] for error in body["errors"]}
    assert len(codes) == 1, body
    return response.status_code, codes.pop()


async def visit(client: httpx.AsyncClient, headers: dict[str, str], hashid: str) -> tuple[int, str]:
    body = {"hashid": hashid, "store": "main"}
    return doofinder(await client.post("/api/v2/stats/visit", json=body, headers=headers))


async def clicks(
    client: httpx.AsyncClient, headers: dict[str, str], hashid: str
) -> tuple[int, str]:
    params = {"from": "20250101", "to": "20250102", "hashids[]": hashid}
    return doofinder(await client.get("/api/v2/stats/clicks", params=params, headers=headers))


async def clicks_index(
    client: httpx.AsyncClient, headers: dict[str, str], hashid: str
) -> tuple[int, str]:
    params = {"from": "20250101", "to": "20250102", "indices[0][name]": "p"}
    params["indices[0][hashid]"] = hashid
    return doofinder(await client.get("/api/v2/stats/clicks", params=params, headers=headers))


def graphql_call(document: str, *, listed: bool = False) -> Call:
    async def call(
        client: httpx.AsyncClient, headers: dict[str, str], hashid: str
    ) -> tuple[int, str]:
        variables = {"e": [hashid] if listed else hashid}
        response = await client.post(
            "/graphql", json={"query": document, "variables": variables}, headers=headers
        )
        return graphql(response)

    return call


CALLS: dict[str, Call] = {
    "doofinder-visit": visit,
    "doofinder-clicks": clicks,
    "doofinder-clicks-index": clicks_index,
    "graphql-record": graphql_call(RECORD),
    "graphql-batch": graphql_call(BATCH),
    "graphql-stats": graphql_call(STATS, listed=True),
    "graphql-forget-user": graphql_call(FORGET),
}


@pytest.mark.parametrize("call", CALLS)
async def test_own_engine_other_accounts_engine_and_no_engine(
    client: httpx.AsyncClient,
    runtime: Runtime,
    tenant: Tenant,
    other_tenant: Tenant,
    call: str,
) -> None:
    act = CALLS[call]
    assert await act(client, tenant.token, tenant.hashid) == (200, "ok")
    written = len(await stored_events(runtime))
    assert await act(client, tenant.token, other_tenant.hashid) == (
        403 if call.startswith("doofinder") else 200,
        "access_denied",
    )
    assert await act(client, tenant.token, UNKNOWN) == (
        404 if call.startswith("doofinder") else 200,
        "not_found",
    )
    # Refused writes store nothing, in the caller's engines as in the other account's.
    assert len(await stored_events(runtime)) == written


def forged(signer: Tenant, name: str) -> dict[str, str]:
    """A well-formed JWT signed with ``signer``'s key, naming account ``name``."""
    now = int(time.time())
    claims = {"iat": now, "exp": now + 600, "name": name}
    return {"Authorization": "Bearer " + jwt.encode(claims, signer.api_key, algorithm="HS256")}


WORKPLACE_EVENT: dict[str, Any] = {
    "type": "click",
    "query_id": "q",
    "document_id": "d",
    "content_source_id": "c",
    "page": 1,
    "rank": 0,
    "event": "api",
}


async def test_a_jwt_naming_another_account_is_not_authenticated_on_every_door(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant, other_tenant: Tenant
) -> None:
    headers = forged(signer=tenant, name=other_tenant.account)
    assert await visit(client, headers, other_tenant.hashid) == (401, "not_authenticated")
    assert await clicks(client, headers, other_tenant.hashid) == (401, "not_authenticated")
    workplace = await client.post(
        "/api/ws/v1/analytics/event", json=WORKPLACE_EVENT, headers=headers
    )
    assert workplace.status_code == 401
    for call in ("graphql-record", "graphql-stats", "graphql-forget-user"):
        assert await CALLS[call](client, headers, other_tenant.hashid) == (
            200,
            "not_authenticated",
        )
    # Signed by the account it names, the same token shape is accepted.
    assert await visit(client, forged(tenant, tenant.account), tenant.hashid) == (200, "ok")
    assert len(await stored_events(runtime)) == 1


async def test_the_engines_query_lists_the_callers_engines_only(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ engines { hashid } }"}, headers=other_tenant.token
    )
    assert response.json() == {"data": {"engines": [{"hashid": other_tenant.hashid}]}}


async def test_anonymous_events_go_to_the_configured_engine_only(
    runtime: Runtime, tenant: Tenant, other_tenant: Tenant
) -> None:
    async def post(anonymous_engine: str) -> httpx.Response:
        settings = runtime.settings.model_copy(update={"anonymous_engine": anonymous_engine})
        policy = EnginePolicy(runtime.database, anonymous_engine=anonymous_engine)
        app = create_app(settings, runtime=replace(runtime, settings=settings, engines=policy))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as anonymous:
            return await anonymous.post("/api/statistics/viewevents", json=VIEW)

    missing = await post(UNKNOWN)
    assert (missing.status_code, missing.json()["error"]) == (404, "Not Found")
    assert (await post(other_tenant.hashid)).status_code == 201
    [event] = await stored_events(runtime)
    assert event.engine_id == await engine_id(runtime, other_tenant.hashid)


def signed_claims(signer: Tenant, claims: str) -> dict[str, str]:
    """A JWT of exactly these claims (raw JSON), signed with the signer's key."""
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT"}')
    payload = jwt.utils.base64url_encode(claims.encode())
    signing_input = header + b"." + payload
    signature = jwt.utils.base64url_encode(
        hmac.new(signer.api_key.encode(), signing_input, hashlib.sha256).digest()
    )
    return {"Authorization": "Bearer " + (signing_input + b"." + signature).decode()}


@pytest.mark.parametrize(
    "claims",
    [
        '{{"iat": [1], "exp": {later}, "name": "{name}"}}',
        '{{"iat": {now}, "exp": 1e400, "name": "{name}"}}',
        '{{"iat": {now}, "exp": NaN, "name": "{name}"}}',
        '{{"iat": {now}, "exp": {later}, "name": ["{name}"]}}',
        # Names no account can have, nor a database hold (PostgreSQL: no NUL; no lone surrogate
        # in UTF-8): they were a masked 500 internal_error, looked up as they were.
        '{{"iat": {now}, "exp": {later}, "name": "{name}\\u0000"}}',
        '{{"iat": {now}, "exp": {later}, "name": "\\ud800"}}',
    ],
    ids=["iat-list", "exp-1e400", "exp-nan", "name-list", "name-nul", "name-lone-surrogate"],
)
async def test_signed_jwts_with_hostile_claims_are_not_authenticated_on_rest_doors(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant, claims: str
) -> None:
    now = int(time.time())
    headers = signed_claims(tenant, claims.format(now=now, later=now + 600, name=tenant.account))
    assert await visit(client, headers, tenant.hashid) == (401, "not_authenticated")
    assert await clicks(client, headers, tenant.hashid) == (401, "not_authenticated")
    workplace = await client.post(
        "/api/ws/v1/analytics/event", json=WORKPLACE_EVENT, headers=headers
    )
    assert workplace.status_code == 401
    # The same shape with sane claims is accepted: the 401s are the claims' own.
    sane = signed_claims(
        tenant, f'{{"iat": {now}, "exp": {now + 600}, "name": "{tenant.account}"}}'
    )
    assert await visit(client, sane, tenant.hashid) == (200, "ok")
    assert len(await stored_events(runtime)) == 1


async def test_a_jwt_expires_at_its_exp_on_every_door_though_issued_a_little_ahead(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant
) -> None:
    """The clock skew allowed is for ``iat`` and ``nbf`` (a client's clock a little ahead), not a
    minute of life after ``exp``: expired seconds ago, a token is refused by REST as by GraphQL."""
    now, name = int(time.time()), tenant.account
    expired = signed_claims(tenant, f'{{"iat": {now - 600}, "exp": {now - 5}, "name": "{name}"}}')
    ahead = signed_claims(
        tenant, f'{{"iat": {now + 30}, "nbf": {now + 30}, "exp": {now + 600}, "name": "{name}"}}'
    )
    for headers, answer in ((expired, (401, "not_authenticated")), (ahead, (200, "ok"))):
        assert await visit(client, headers, tenant.hashid) == answer
        assert await clicks(client, headers, tenant.hashid) == answer
        workplace = await client.post(
            "/api/ws/v1/analytics/event", json=WORKPLACE_EVENT, headers=headers
        )
        assert workplace.status_code == answer[0]
        for call in ("graphql-record", "graphql-stats"):
            assert await CALLS[call](client, headers, tenant.hashid) == (200, answer[1])
    assert len(await stored_events(runtime)) == 3


async def test_a_batch_binds_each_event_to_its_own_engine(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant, other_tenant: Tenant
) -> None:
    second = await accounts.create_engine(database=runtime.database, account=tenant.account)
    visits = [
        {"visit": {"store": "a"}},
        {"visit": {"store": "b", "engine": second.hashid}},
        {"visit": {"store": "c", "engine": tenant.hashid}},
        {"visit": {"store": "d"}},
        {"visit": {"store": "e", "engine": second.hashid}},
    ]
    data(await gql(client, tenant, RECORD_EVENTS, input=visits), "recordEvents")
    default = await engine_id(runtime, tenant.hashid)
    other = await engine_id(runtime, second.hashid)
    stored = await stored_events(runtime)
    assert [event.engine_id for event in stored] == [default, other, default, default, other]
    # An engine named again after an event it was refused for is refused at its first index.
    foreign = [*visits[:2], {"visit": {"store": "f", "engine": other_tenant.hashid}}] * 2
    body = await gql(client, tenant, RECORD_EVENTS, input=foreign)
    assert body["errors"][0]["extensions"]["code"] == "access_denied"
    assert body["errors"][0]["message"].startswith("events[2]: ")
    assert len(await stored_events(runtime)) == len(visits)


async def test_concurrent_first_requests_share_one_engine_lookup(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new worker's first requests all miss the engine cache at once: they ask the database
    once between them, for a named engine as for the account's default; a lookup that finds
    nothing refuses them all, and is asked again by the next request."""
    lookups: list[str] = []
    real_by_hashid, real_of_account = directory.engine_by_hashid, directory.engines_of_account

    async def by_hashid(session: AsyncSession, hashid: str) -> EngineRecord | None:
        lookups.append(hashid)
        await asyncio.sleep(0.01)
        return await real_by_hashid(session, hashid)

    async def of_account(session: AsyncSession, account_id: int) -> list[EngineRecord]:
        lookups.append("default")
        await asyncio.sleep(0.01)
        return await real_of_account(session, account_id)

    monkeypatch.setattr(directory, "engine_by_hashid", by_hashid)
    monkeypatch.setattr(directory, "engines_of_account", of_account)
    policy = EnginePolicy(runtime.database, anonymous_engine=None)
    principal = await runtime.authenticator.authenticate(f"Token {tenant.api_key}")
    asked = [tenant.hashid, None] * 32
    engines = await asyncio.gather(*(policy.engine_for(principal, h) for h in asked))
    assert {engine.hashid for engine in engines} == {tenant.hashid}
    assert sorted(lookups) == sorted([tenant.hashid, "default"])

    outcomes = await asyncio.gather(
        *(policy.engine_for(principal, UNKNOWN) for _ in range(8)), return_exceptions=True
    )
    assert all(isinstance(outcome, NotFound) for outcome in outcomes)
    assert lookups.count(UNKNOWN) == 1
    with pytest.raises(NotFound):
        await policy.engine_for(principal, UNKNOWN)
    assert lookups.count(UNKNOWN) == 2


async def test_anonymous_events_look_up_the_first_engine_once(
    runtime: Runtime, tenant: Tenant, other_tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without SEARCHSTATS_ANONYMOUS_ENGINE, every anonymous DSpace event asked the database
    for the first engine created: a query on the main pool per page view. The first engine
    never changes once there is one (engines are not deleted): it is looked up once, by
    concurrent events together."""
    lookups: list[str] = []
    real_first = directory.first_engine

    async def first(session: AsyncSession) -> EngineRecord | None:
        lookups.append("first")
        await asyncio.sleep(0.01)
        return await real_first(session)

    monkeypatch.setattr(directory, "first_engine", first)
    policy = EnginePolicy(runtime.database, anonymous_engine=None)
    engines = await asyncio.gather(*(policy.anonymous_target() for _ in range(16)))
    engines.append(await policy.anonymous_target())
    assert {engine.hashid for engine in engines} == {tenant.hashid}
    assert lookups == ["first"]


async def test_without_any_engine_anonymous_events_are_refused_until_one_exists(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = EnginePolicy(runtime.database, anonymous_engine=None)
    for _ in range(2):  # nothing is remembered of not finding one
        with pytest.raises(NotFound):
            await policy.anonymous_target()
    created = await make_tenant(runtime, "late")
    assert (await policy.anonymous_target()).hashid == created.hashid
