"""Rate limits on every door: per account, reads and writes apart, anonymous clients by address,
shared through Redis across workers, and writes still accepted when Redis is down."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
from pydantic import ValidationError

from app.main import create_app
from app.services import limits as limits_service
from app.services.runtime import Runtime, build_runtime
from app.settings import Settings
from graphql_schema.http import GRAPHQL_RESPONSE
from tests.conftest import BROWSER_UA, REQUIRE_POSTGRES, Tenant, make_tenant

# Transport behaviour: one database backend is enough.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

REDIS_URL = os.environ.get("SEARCHSTATS_TEST_LIMITS_REDIS_URL", "redis://127.0.0.1:6379/14")
CLICKS = "/api/v2/stats/clicks"
PERIOD = {"from": "20250301", "to": "20250302"}
STATS = '{ stats(from: "2025-03-01", to: "2025-03-02") { clicks { totalCount } } }'
VIEW = {"type": "view", "targetId": "43f9bb3e-f90d-458f-9858-7e4589481d18", "targetType": "item"}
PEER = "203.0.113.7"

Factory = Callable[..., Any]


@asynccontextmanager
async def limited(
    settings: Settings, *, peer: str = PEER, **overrides: Any
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """A worker with its own limits, and a client calling it from ``peer``."""
    runtime = build_runtime(settings.model_copy(update=overrides))
    await runtime.start()
    try:
        app = create_app(runtime.settings, runtime=runtime)
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers={"User-Agent": BROWSER_UA}
        ) as client:
            yield runtime, client
    finally:
        await runtime.stop()


def client_from(client: httpx.AsyncClient, peer: str) -> httpx.AsyncClient:
    """Another client of the same app, from another address."""
    app = client._transport.app  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app, client=(peer, 40001))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def clicks(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.get(CLICKS, params=PERIOD, headers=headers)


async def graphql(client: httpx.AsyncClient, headers: dict[str, str], query: str) -> httpx.Response:
    return await client.post("/graphql", json={"query": query}, headers=headers)


def visit(tenant: Tenant) -> dict[str, Any]:
    return {"json": {"hashid": tenant.hashid, "store": "main"}, "headers": tenant.token}


def jwt_of(tenant: Tenant) -> dict[str, str]:
    now = int(time.time())
    claims = {"iat": now, "exp": now + 600, "name": tenant.account}
    return {"Authorization": "Bearer " + jwt.encode(claims, tenant.api_key, algorithm="HS256")}


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["Retry-After"]) <= 1


async def test_21_reads_in_a_second_are_refused_then_served_again(settings: Settings) -> None:
    async with limited(settings, read_rate_limit="20/second") as (runtime, client):
        tenant = await make_tenant(runtime, "acme")
        started = time.monotonic()
        answers = [await clicks(client, tenant.token) for _ in range(21)]
        assert time.monotonic() - started < 1, "the 21 reads must fit in one second"
        assert [r.status_code for r in answers] == [200] * 20 + [429]
        assert_refused(answers[-1])
        assert answers[-1].json() == {
            "error": {
                "code": "too_many_requests",
                "message": "over the read rate limit of 20 per 1 second",
            }
        }
        await asyncio.sleep(int(answers[-1].headers["Retry-After"]))
        assert (await clicks(client, tenant.token)).status_code == 200


def test_a_rate_of_no_request_is_refused_at_start(settings: Settings) -> None:
    """``limits`` reads "0/second": every request refused, with no request to leave the window
    and say when to retry (each answered 500)."""
    for name in ("read_rate_limit", "write_rate_limit"):
        with pytest.raises(ValidationError, match="at least one request"):
            Settings.model_validate({**settings.model_dump(), name: "0/second"})


def test_several_rates_in_one_setting_are_refused_at_start(settings: Settings) -> None:
    """``limits`` reads "10/second;100/minute" too, but only its first rate was enforced: the
    hundred a minute an operator asked for was never counted."""
    for rates in ("10/second;100/minute", "10/second, 100/minute"):
        with pytest.raises(ValidationError, match="one rate"):
            Settings.model_validate({**settings.model_dump(), "write_rate_limit": rates})


async def test_graphql_queries_share_the_read_limit_and_answer_in_graphql(
    settings: Settings,
) -> None:
    async with limited(settings, read_rate_limit="3/second") as (runtime, client):
        tenant = await make_tenant(runtime, "acme")
        assert (
            await clicks(client, tenant.token)
        ).status_code == 200  # REST and GraphQL: one budget
        for _ in range(2):
            assert "errors" not in (await graphql(client, tenant.token, STATS)).json()
        refused = await graphql(client, tenant.token, STATS)
        assert_refused(refused)
        assert refused.json()["data"] is None
        assert [e["extensions"]["code"] for e in refused.json()["errors"]] == ["too_many_requests"]


async def test_one_accounts_burst_never_slows_another(settings: Settings) -> None:
    async with limited(settings, read_rate_limit="5/second") as (runtime, client):
        acme, globex = await make_tenant(runtime, "acme"), await make_tenant(runtime, "globex")
        for _ in range(5):
            assert (await clicks(client, acme.token)).status_code == 200
        assert_refused(await clicks(client, acme.token))
        # The limit is the account's, whatever credential it shows: its JWT is refused too...
        assert_refused(await clicks(client, jwt_of(acme)))
        # ...while another account, from the same address, is served at once.
        for _ in range(5):
            assert (await clicks(client, globex.token)).status_code == 200


async def test_reads_and_writes_have_separate_budgets(settings: Settings) -> None:
    async with limited(settings, read_rate_limit="2/second", write_rate_limit="3/second") as (
        runtime,
        client,
    ):
        tenant = await make_tenant(runtime, "acme")
        for _ in range(2):
            assert (await clicks(client, tenant.token)).status_code == 200
        assert_refused(await clicks(client, tenant.token))
        for _ in range(3):
            response = await client.post("/api/v2/stats/visit", **visit(tenant))
            assert response.status_code == 200, response.text
        refused = await client.post("/api/v2/stats/visit", **visit(tenant))
        assert_refused(refused)
        assert refused.json()["error"]["code"] == "too_many_requests"
        mutation = 'mutation { recordVisit(input: {store: "main"}) { id } }'
        refused = await graphql(client, tenant.token, mutation)
        assert_refused(refused)
        assert refused.json()["errors"][0]["extensions"]["code"] == "too_many_requests"


async def test_workplace_writes_are_limited_in_its_dialect(settings: Settings) -> None:
    async with limited(settings, write_rate_limit="1/second") as (runtime, client):
        tenant = await make_tenant(runtime, "acme")
        event = {
            "type": "click",
            "query_id": "q",
            "document_id": "d",
            "content_source_id": "c",
            "page": 1,
            "rank": 0,
            "event": "api",
        }
        path = "/api/ws/v1/analytics/event"
        assert (await client.post(path, json=event, headers=tenant.token)).status_code == 200
        refused = await client.post(path, json=event, headers=tenant.token)
        assert_refused(refused)
        assert refused.json() == {"errors": ["over the write rate limit of 1 per 1 second"]}


async def test_anonymous_dspace_clients_are_counted_by_address(settings: Settings) -> None:
    async with limited(settings, write_rate_limit="2/second") as (runtime, client):
        await make_tenant(runtime, "acme")
        for _ in range(2):
            assert (await client.post("/api/statistics/viewevents", json=VIEW)).status_code == 201
        refused = await client.post("/api/statistics/viewevents", json=VIEW)
        assert_refused(refused)
        assert refused.json()["status"] == 429
        assert refused.json()["error"] == "Too Many Requests"
        # X-Forwarded-For from an untrusted peer proves nothing: it cannot buy a fresh budget.
        spoofed = await client.post(
            "/api/statistics/viewevents", json=VIEW, headers={"X-Forwarded-For": "198.51.100.1"}
        )
        assert_refused(spoofed)
        async with client_from(client, "203.0.113.8") as neighbour:
            assert (
                await neighbour.post("/api/statistics/viewevents", json=VIEW)
            ).status_code == 201


async def test_forwarded_address_is_believed_from_trusted_proxies_only(settings: Settings) -> None:
    proxy = "10.1.2.3"
    async with limited(
        settings, peer=proxy, write_rate_limit="1/second", trusted_proxies=["10.0.0.0/8"]
    ) as (runtime, client):
        await make_tenant(runtime, "acme")

        async def post(forwarded: str) -> int:
            headers = {"X-Forwarded-For": forwarded}
            response = await client.post("/api/statistics/viewevents", json=VIEW, headers=headers)
            return response.status_code

        assert await post("198.51.100.1") == 201
        assert await post("198.51.100.1") == 429
        # Another client behind the proxy has its own budget...
        assert await post("198.51.100.2") == 201
        # ...and what a client writes to the left of the real hop changes nothing.
        assert await post("192.0.2.99, 198.51.100.2") == 429
        assert await post("192.0.2.98, 198.51.100.2, 10.9.9.9") == 429


async def test_failed_credentials_are_counted_by_address(settings: Settings) -> None:
    async with limited(settings, read_rate_limit="3/second") as (runtime, client):
        tenant = await make_tenant(runtime, "acme")
        wrong = {"Authorization": "Token " + "0" * 40}
        statuses = [(await clicks(client, wrong)).status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        # The account itself is not slowed by someone guessing keys.
        assert (await clicks(client, tenant.token)).status_code == 200


async def test_failed_credentials_are_counted_at_the_read_rate_at_every_door(
    settings: Settings,
) -> None:
    """A guess is a guess whatever the door: a wrong key sent to a door that writes (a REST
    POST, a GraphQL mutation) is not given the write rate, 1000 a second by default."""
    async with limited(settings, read_rate_limit="3/second", write_rate_limit="100/second") as (
        runtime,
        client,
    ):
        tenant = await make_tenant(runtime, "acme")
        wrong = {"Authorization": "Token " + "0" * 40}
        body = {"hashid": tenant.hashid, "store": "main"}
        statuses = [
            (await client.post("/api/v2/stats/visit", json=body, headers=wrong)).status_code
            for _ in range(2)
        ]
        mutation = 'mutation { recordVisit(input: {store: "main"}) { id } }'
        statuses.append((await graphql(client, wrong, mutation)).status_code)
        assert statuses == [401, 401, 200]  # GraphQL: not_authenticated, in a 200
        assert_refused(await client.post("/api/v2/stats/visit", json=body, headers=wrong))
        assert_refused(await graphql(client, wrong, mutation))
        assert_refused(await clicks(client, wrong))
        # The account's own writes are not slowed by the guesses.
        assert (await client.post("/api/v2/stats/visit", **visit(tenant))).status_code == 200


async def test_an_ipv6_client_is_counted_by_its_64_network(settings: Settings) -> None:
    """A host given an IPv6 /64 has 2^64 addresses to send from: counted by address, each
    would be a new budget of guesses."""
    peer = "2001:db8:1:2::10"
    async with limited(settings, peer=peer, read_rate_limit="2/second") as (_runtime, client):
        wrong = {"Authorization": "Token " + "0" * 40}
        assert (await clicks(client, wrong)).status_code == 401
        async with client_from(client, "2001:db8:1:2:ffff:1:2:3") as same_network:
            assert (await clicks(same_network, wrong)).status_code == 401
            assert_refused(await clicks(same_network, wrong))
        async with client_from(client, "2001:db8:1:3::10") as next_network:
            assert (await clicks(next_network, wrong)).status_code == 401
        # An IPv4 client seen on a dual-stack socket is the IPv4 address it is.
        async with (
            client_from(client, "::ffff:203.0.113.7") as mapped,
            client_from(client, "203.0.113.7") as plain,
        ):
            assert (await clicks(mapped, wrong)).status_code == 401
            assert (await clicks(plain, wrong)).status_code == 401
            assert_refused(await clicks(plain, wrong))


async def redis_or_skip() -> str:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    client = aioredis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.flushdb()
    except (RedisError, OSError) as error:
        message = f"Redis at {REDIS_URL} does not answer ({type(error).__name__})"
        if REQUIRE_POSTGRES:
            pytest.fail(message + " and this run requires it", pytrace=False)
        pytest.skip(message)
    finally:
        await client.aclose()
    return REDIS_URL


async def test_two_workers_share_one_limit_through_redis(settings: Settings) -> None:
    url = await redis_or_skip()
    async with AsyncExitStack() as stack:
        workers = [
            await stack.enter_async_context(
                limited(settings, broker_url=url, read_rate_limit="6/second")
            )
            for _ in range(2)
        ]
        (first, one), (second, two) = workers
        assert first.limits.shared
        assert second.limits.shared
        tenant = await make_tenant(first, "acme")
        statuses = [
            (await clicks(client, tenant.token)).status_code
            for client in (one, two, one, two, one, two)
        ]
        assert statuses == [200] * 6
        # Each worker has served only three: the seventh is refused by the shared count.
        assert_refused(await clicks(one, tenant.token))
        assert_refused(await clicks(two, tenant.token))


async def test_deployments_sharing_a_redis_database_count_apart(settings: Settings) -> None:
    url = await redis_or_skip()
    async with (
        limited(settings, broker_url=url, read_rate_limit="2/second") as (production, one),
        # A staging copy: the same accounts, its own secret key, the same Redis database.
        limited(
            settings, broker_url=url, read_rate_limit="2/second", secret_key="staging-secret-key"
        ) as (_, two),
    ):
        tenant = await make_tenant(production, "acme")
        statuses = [(await clicks(one, tenant.token)).status_code for _ in range(2)]
        assert statuses == [200, 200]
        assert_refused(await clicks(one, tenant.token))
        # The other deployment's account of the same id has a budget of its own.
        assert (await clicks(two, tenant.token)).status_code == 200


async def test_with_redis_down_writes_are_accepted_and_reads_limited_per_worker(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    async with limited(
        settings, broker_url=nowhere, read_rate_limit="2/second", write_rate_limit="2/second"
    ) as (runtime, client):
        tenant = await make_tenant(runtime, "acme")
        for _ in range(5):
            response = await client.post("/api/v2/stats/visit", **visit(tenant))
            assert response.status_code == 200, response.text
        statuses = [(await clicks(client, tenant.token)).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
    assert "Redis does not answer" in caplog.text


async def test_a_redis_outage_is_logged_once_not_at_each_retry(
    settings: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each retry that failed logged the outage again: a line every 5 s per worker while it
    lasted. Here every request retries Redis."""
    monkeypatch.setattr(limits_service, "REDIS_RETRY_SECONDS", 0.0)
    async with limited(settings, broker_url="redis://127.0.0.1:1/0") as (runtime, client):
        tenant = await make_tenant(runtime, "acme")
        for _ in range(3):
            assert (await clicks(client, tenant.token)).status_code == 200
    outage = [r for r in caplog.records if "Redis does not answer" in r.getMessage()]
    assert len(outage) == 1


async def test_a_refused_operation_keeps_its_429_in_graphql_response_json(
    settings: Settings,
) -> None:
    """Refused as a whole, nothing ran: no ``data`` in the media type that says so."""
    async with limited(settings, read_rate_limit="1/minute") as (runtime, client):
        tenant = await make_tenant(runtime, "acme")
        headers = {**tenant.token, "Accept": GRAPHQL_RESPONSE}
        assert (await graphql(client, headers, STATS)).status_code == 200
        refused = await graphql(client, headers, STATS)
        assert (refused.status_code, refused.headers["content-type"]) == (429, GRAPHQL_RESPONSE)
        assert int(refused.headers["Retry-After"]) >= 1
        body = refused.json()
        assert "data" not in body
        assert [error["extensions"]["code"] for error in body["errors"]] == ["too_many_requests"]
