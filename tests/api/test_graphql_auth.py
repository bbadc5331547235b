"""Credentials on the GraphQL door: Token, Bearer key, Bearer JWT; hostile tokens are a 401 code."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import credentials
from app.auth.credentials import Authenticator
from app.errors import NotAuthenticated, Unavailable
from app.services import accounts
from app.services.live import LiveStats
from app.services.runtime import Runtime
from app.storage import directory
from app.storage.directory import AccountRecord
from graphql_schema.context import Context
from tests.api.helpers import data, error_code, gql
from tests.conftest import Tenant

ENGINES = "{ engines { hashid isDefault } }"
WEEK = 7 * 24 * 3600


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def craft(payload: str, key: str, header: str = '{"alg":"HS256","typ":"JWT"}') -> str:
    """A JWT assembled by hand, so that claims no library would emit can be sent."""
    signing_input = f"{b64(header.encode())}.{b64(payload.encode())}"
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def good_claims(tenant: Tenant, lifetime: int = 3600) -> dict[str, object]:
    now = int(time.time())
    return {"iat": now, "exp": now + lifetime, "name": tenant.account}


async def engines_of(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    return [e["hashid"] for e in data(await gql(client, headers, ENGINES), "engines")]


async def test_token_and_bearer_api_key(client: httpx.AsyncClient, tenant: Tenant) -> None:
    assert await engines_of(client, {"Authorization": f"Token {tenant.api_key}"}) == [tenant.hashid]
    assert await engines_of(client, bearer(tenant.api_key)) == [tenant.hashid]
    assert await engines_of(client, {"Authorization": f"token   {tenant.api_key}  "}) == [
        tenant.hashid
    ]


async def test_jwt_signed_with_the_api_key(client: httpx.AsyncClient, tenant: Tenant) -> None:
    token = jwt.encode(good_claims(tenant), tenant.api_key, algorithm="HS256")
    assert await engines_of(client, bearer(token)) == [tenant.hashid]
    by_hand = craft(json.dumps(good_claims(tenant, lifetime=WEEK - 60)), tenant.api_key)
    assert await engines_of(client, bearer(by_hand)) == [tenant.hashid]


async def test_jwt_records_into_the_accounts_engine(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    token = jwt.encode(good_claims(tenant), tenant.api_key, algorithm="HS256")
    body = await gql(
        client,
        bearer(token),
        'mutation { recordSearch(input: {query: "jwt"}) { status } }',
    )
    assert data(body, "recordSearch") == {"status": "registered"}


async def test_jwt_signed_with_another_accounts_key_is_refused(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    forged = jwt.encode(good_claims(tenant), other_tenant.api_key, algorithm="HS256")
    assert error_code(await gql(client, bearer(forged), ENGINES)) == "not_authenticated"
    # The same key naming its own account works: the refusal is about the pairing.
    own = jwt.encode(good_claims(other_tenant), other_tenant.api_key, algorithm="HS256")
    assert await engines_of(client, bearer(own)) == [other_tenant.hashid]


NOW = int(time.time())
HOSTILE_PAYLOADS = {
    "iat-list": f'{{"iat": [1], "exp": {NOW + 60}, "name": "acme"}}',
    "exp-huge": f'{{"iat": {NOW}, "exp": 1e400, "name": "acme"}}',
    "exp-nan": f'{{"iat": {NOW}, "exp": NaN, "name": "acme"}}',
    "iat-minus-infinity": f'{{"iat": -Infinity, "exp": {NOW + 60}, "name": "acme"}}',
    "exp-string": f'{{"iat": {NOW}, "exp": "{NOW + 60}", "name": "acme"}}',
    "iat-bool": f'{{"iat": true, "exp": {NOW + 60}, "name": "acme"}}',
    "exp-object": f'{{"iat": {NOW}, "exp": {{"$gt": 0}}, "name": "acme"}}',
    "over-a-week": f'{{"iat": {NOW}, "exp": {NOW + WEEK + 1}, "name": "acme"}}',
    "exactly-a-week": f'{{"iat": {NOW}, "exp": {NOW + WEEK}, "name": "acme"}}',
    "expired": f'{{"iat": {NOW - 7200}, "exp": {NOW - 3600}, "name": "acme"}}',
    "issued-in-the-future": f'{{"iat": {NOW + 3600}, "exp": {NOW + 7200}, "name": "acme"}}',
    "exp-before-iat": f'{{"iat": {NOW}, "exp": {NOW - 1}, "name": "acme"}}',
    "no-iat": f'{{"exp": {NOW + 60}, "name": "acme"}}',
    "no-exp": f'{{"iat": {NOW}, "name": "acme"}}',
    "no-name": f'{{"iat": {NOW}, "exp": {NOW + 60}}}',
    "empty-name": f'{{"iat": {NOW}, "exp": {NOW + 60}, "name": ""}}',
    "name-list": f'{{"iat": {NOW}, "exp": {NOW + 60}, "name": ["acme"]}}',
    "name-nul": f'{{"iat": {NOW}, "exp": {NOW + 60}, "name": "acme\\u0000"}}',
    "name-lone-surrogate": f'{{"iat": {NOW}, "exp": {NOW + 60}, "name": "\\ud800"}}',
    "name-too-long": f'{{"iat": {NOW}, "exp": {NOW + 60}, "name": "{"a" * 1000}"}}',
    "unknown-account": f'{{"iat": {NOW}, "exp": {NOW + 60}, "name": "nobody"}}',
    "payload-array": "[1, 2]",
    "payload-number": "1e400",
    "payload-not-json": "{not json",
}


@pytest.mark.parametrize("payload", HOSTILE_PAYLOADS.values(), ids=HOSTILE_PAYLOADS.keys())
async def test_hostile_jwt_claims_are_not_authenticated(
    client: httpx.AsyncClient, tenant: Tenant, payload: str
) -> None:
    assert tenant.account == "acme"
    body = await gql(client, bearer(craft(payload, tenant.api_key)), ENGINES)
    assert error_code(body) == "not_authenticated"


@pytest.mark.parametrize(
    "header",
    [
        '{"alg":"none","typ":"JWT"}',
        '{"alg":"HS512","typ":"JWT"}',
        '{"alg":"RS256","typ":"JWT"}',
        '{"typ":"JWT"}',
        "[]",
        "not json",
    ],
)
async def test_hostile_jwt_headers_are_not_authenticated(
    client: httpx.AsyncClient, tenant: Tenant, header: str
) -> None:
    token = craft(json.dumps(good_claims(tenant)), tenant.api_key, header=header)
    assert error_code(await gql(client, bearer(token), ENGINES)) == "not_authenticated"


async def test_unsigned_jwt_is_not_authenticated(client: httpx.AsyncClient, tenant: Tenant) -> None:
    header = b64(b'{"alg":"none","typ":"JWT"}')
    token = f"{header}.{b64(json.dumps(good_claims(tenant)).encode())}."
    assert error_code(await gql(client, bearer(token), ENGINES)) == "not_authenticated"


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Token",
        "Token ",
        "Token 0000000000000000000000000000000000000000",
        "Basic YWNtZTpzZWNyZXQ=",
        "Bearer a.b.c",
        "Bearer ...",
        "Bearer " + "a" * 5000,
        "Token \x00",
    ],
)
async def test_bad_credentials_are_not_authenticated(
    client: httpx.AsyncClient, tenant: Tenant, authorization: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    assert error_code(await gql(client, headers, ENGINES)) == "not_authenticated"


@pytest.mark.parametrize(
    "arguments",
    ['from: "2026-01-01", to: "2026-01-02", timezone: "Mars/Olympus"', 'from: "x", to: "y"'],
)
async def test_stats_without_a_credential_is_not_authenticated_whatever_its_arguments(
    client: httpx.AsyncClient, tenant: Tenant, arguments: str
) -> None:
    """As at the REST doors: the credential is checked before the question is."""
    body = await gql(client, {}, f"{{ stats({arguments}) {{ searches {{ totalCount }} }} }}")
    assert error_code(body) == "not_authenticated"


async def test_concurrent_requests_share_one_credential_lookup(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a busy credential's cache entry expires, the requests in flight ask the database
    once between them, not once each; a failed lookup fails them all and is not remembered."""
    lookups: list[str] = []
    real_by_key, real_by_name = directory.account_by_key_digest, directory.account_by_name

    async def by_key(session: AsyncSession, digest: str) -> AccountRecord | None:
        lookups.append("key")
        await asyncio.sleep(0.01)
        return await real_by_key(session, digest)

    async def by_name(session: AsyncSession, name: str) -> AccountRecord | None:
        lookups.append("name")
        await asyncio.sleep(0.01)
        return await real_by_name(session, name)

    monkeypatch.setattr(directory, "account_by_key_digest", by_key)
    monkeypatch.setattr(directory, "account_by_name", by_name)
    token = jwt.encode(good_claims(tenant), tenant.api_key, algorithm="HS256")
    credentials = [f"Token {tenant.api_key}", f"Bearer {token}"] * 10
    principals = await asyncio.gather(*map(runtime.authenticator.authenticate, credentials))
    assert {p.account_name for p in principals} == {tenant.account}
    assert sorted(lookups) == ["key", "name"]

    async def failing(session: AsyncSession, digest: str) -> AccountRecord | None:
        lookups.append("failed")
        await asyncio.sleep(0.01)
        raise Unavailable(retry_after=1)

    monkeypatch.setattr(directory, "account_by_key_digest", failing)
    other = Authenticator(runtime.database, runtime.vault, cache_seconds=5)
    outcomes = await asyncio.gather(
        *(other.authenticate(f"Token {tenant.api_key}") for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(outcome, Unavailable) for outcome in outcomes)
    assert lookups.count("failed") == 1
    monkeypatch.setattr(directory, "account_by_key_digest", real_by_key)
    assert (await other.authenticate(f"Token {tenant.api_key}")).account_name == tenant.account


class Clock:
    """The credential memory's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


async def test_a_websocket_remembers_its_caller_no_longer_than_the_worker_remembers_the_key(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Revoked, a key starts nothing more on a websocket once the worker's memory of it is over,
    however recently the connection itself was last told the key was good."""
    clock = Clock()
    monkeypatch.setattr(credentials, "time", clock)
    memory = runtime.settings.credential_cache_seconds
    credential = f"Token {tenant.api_key}"
    socket = Context(
        runtime=runtime, live=LiveStats(runtime), authorization=credential, user_agent=None
    )
    await socket.connect()
    clock.now = memory + 1  # another client of the key: looked up again, remembered from now
    await runtime.authenticator.authenticate(credential)
    clock.now = memory + 2
    await accounts.revoke_api_key(database=runtime.database, api_key=tenant.api_key)
    clock.now = 2 * memory + 0.5  # the worker still remembers the key: accepted
    assert (await socket.principal()).account_name == tenant.account
    clock.now = 2 * memory + 2.5  # over a memory after the revocation, and forgotten
    with pytest.raises(NotAuthenticated):
        await runtime.authenticator.authenticate(credential)
    with pytest.raises(NotAuthenticated):
        await socket.principal()


async def test_a_slow_lookup_is_remembered_from_when_the_database_was_asked(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key revoked while its lookup was on its way back (a busy database, a slow network) is
    refused one credential memory after the database was asked, not after the answer came."""
    clock = Clock()
    monkeypatch.setattr(credentials, "time", clock)
    memory = runtime.settings.credential_cache_seconds
    real_by_key = directory.account_by_key_digest

    async def slow(session: AsyncSession, digest: str) -> AccountRecord | None:
        found = await real_by_key(session, digest)
        clock.now = memory - 1  # the answer arrives
        return found

    monkeypatch.setattr(directory, "account_by_key_digest", slow)
    credential = f"Token {tenant.api_key}"
    assert (await runtime.authenticator.authenticate(credential)).account_name == tenant.account
    monkeypatch.setattr(directory, "account_by_key_digest", real_by_key)
    # Revoked as the answer was on its way (at 0.5, say): nothing asked the database since.
    await accounts.revoke_api_key(database=runtime.database, api_key=tenant.api_key)
    clock.now = memory + 1  # over a memory after the revocation
    with pytest.raises(NotAuthenticated):
        await runtime.authenticator.authenticate(credential)
