"""What an operator sees: Prometheus metrics, request ids, JSON log lines without personal data."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.http.json_logs import JsonLines
from app.main import create_app
from app.services.runtime import Runtime
from tests.api.helpers import RECORD_EVENTS, gql, record
from tests.conftest import BROWSER_UA, Tenant
from tests.e2e.graphql_ws import eventually, graphql_socket
from tests.e2e.live_support import EVENTS, Served, served_app, token

VISIT = {"store": "b0b0a7a5-5b3c-4d7e-8f9a-bb5a7e0f1c2d", "session_id": "s1"}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_metrics_count_events_by_type_and_door(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = await gql(
        client,
        tenant,
        RECORD_EVENTS,
        input=[{"search": {"query": "shoes", "eventId": "m1"}}, {"visit": {"store": "s"}}],
    )
    assert "errors" not in body, body
    again = await gql(client, tenant, record("recordSearch"), input={"query": "x", "eventId": "m1"})
    assert again["data"]["recordSearch"]["duplicate"] is True
    visit = await client.post(
        "/api/v2/stats/visit", json=VISIT, headers={"Authorization": f"Token {tenant.api_key}"}
    )
    assert visit.status_code == 200

    text = await scrape(client)
    # The duplicate is not counted: only what was newly stored.
    assert value(text, "searchstats_events_recorded_total", type="search", door="graphql") == 1
    assert value(text, "searchstats_events_recorded_total", type="visit", door="graphql") == 1
    assert value(text, "searchstats_events_recorded_total", type="visit", door="doofinder") == 1
    batches = value(text, "searchstats_ingest_batch_events_count")
    assert batches >= 3
    assert value(text, "searchstats_ingest_batch_events_sum") == 4  # duplicates are written too
    assert value(text, "searchstats_ingest_commit_seconds_count") == batches


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_request_latency_by_route_template_and_errors_by_code(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    hashid_path = f"/api/v2/stats/clicks?hashids[]={tenant.hashid}&from=20250301&to=20250302"
    assert (await client.get(hashid_path, headers=tenant.token)).status_code == 200
    assert (await client.get("/api/v2/stats/clicks", headers=tenant.token)).status_code == 400
    unauthenticated = await client.post("/api/v2/stats/visit", json=VISIT)
    assert unauthenticated.status_code == 401
    assert (await client.get("/no/such/path/42")).status_code == 404
    invalid = await gql(
        client, tenant, record("recordClick"), input={"documentId": "d", "rank": -1}
    )
    assert invalid["errors"][0]["extensions"]["code"] == "bad_params"

    text = await scrape(client)
    route = "searchstats_request_duration_seconds_count"
    assert value(text, route, route="/api/v2/stats/clicks", method="GET") == 2
    assert value(text, route, route="/api/v2/stats/visit", method="POST") == 1
    assert value(text, route, route="/graphql", method="POST") == 1
    # A path that matches no route is one label, whatever was asked: no unbounded label values.
    assert value(text, route, route="unmatched", method="GET") == 1
    assert not any("/no/such" in line for line in text.splitlines())
    assert value(text, "searchstats_errors_total", code="bad_params") == 2  # REST 400, GraphQL 200
    assert value(text, "searchstats_errors_total", code="not_authenticated") == 1
    assert value(text, "searchstats_errors_total", code="not_found") == 1


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_methods_no_route_answers_are_one_label(client: httpx.AsyncClient) -> None:
    """A method is whatever token the client sends: each made-up one was a histogram of its
    own (16 series, and one more per route it was sent to), without bound."""
    for method in ("PROPFIND", "MKCALENDAR", "X-MADE-UP-1", "X-MADE-UP-2"):
        answered = await client.request(method, "/api/v2/stats/visit")
        assert answered.status_code == 405
        await client.request(method, "/no/such/path")

    text = await scrape(client)
    route = "searchstats_request_duration_seconds_count"
    assert value(text, route, route="/api/v2/stats/visit", method="other") == 4
    assert value(text, route, route="unmatched", method="other") == 4
    methods = {dict(labels).get("method") for name, labels in samples(text) if name == route}
    assert methods == {"other"}  # the scrape is timed once answered


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_cors_preflight_is_counted_as_one_not_as_an_unknown_path(
    client: httpx.AsyncClient,
) -> None:
    """The cross-origin layer answers a preflight before any route is matched: every browser
    client's OPTIONS was counted under route="unmatched", with the scans of unknown paths."""
    preflight = await client.options(
        "/graphql",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    plain_options = await client.options("/no/such/path")  # not a preflight: no Origin

    text = await scrape(client)
    route = "searchstats_request_duration_seconds_count"
    assert value(text, route, route="preflight", method="OPTIONS") == 1
    assert value(text, route, route="unmatched", method="OPTIONS") == 1
    assert plain_options.status_code == 404


@pytest.fixture
async def served(runtime: Runtime) -> AsyncIterator[Served]:
    async with served_app(runtime) as app:
        yield app


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_websocket_subscribers_gauge(served: Served, tenant: Tenant) -> None:
    runtime: Runtime = served.app.state.runtime
    async with graphql_socket(served.ws_url, payload=token(tenant)) as socket:
        await socket.subscribe("1", EVENTS)
        await socket.subscribe("2", EVENTS)
        await eventually(lambda: runtime.broker.subscriber_count == 2)
        text = await scrape(served.http)
        assert value(text, "searchstats_websocket_connections") == 1
        assert value(text, "searchstats_websocket_subscribers") == 2
    await eventually(lambda: runtime.broker.subscriber_count == 0)
    # The connection's end is counted once the server has seen it close.
    for _ in range(100):
        text = await scrape(served.http)
        if value(text, "searchstats_websocket_connections") == 0:
            break
    assert value(text, "searchstats_websocket_connections") == 0
    assert value(text, "searchstats_websocket_subscribers") == 0


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123_x.y:z", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("bad id\n", False),
        ("", False),
    ],
)
async def test_request_id_kept_when_well_formed_else_generated(
    client: httpx.AsyncClient, sent: str, kept: bool
) -> None:
    headers = {"X-Request-ID": sent} if sent else {}
    response = await client.get("/healthz", headers=headers)
    returned = response.headers["x-request-id"]
    if kept:
        assert returned == sent
    else:
        assert returned != sent
        assert len(returned) == 32
        int(returned, 16)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_access_log_is_json_with_request_id_and_no_personal_data(
    client: httpx.AsyncClient, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="searchstats.access")
    secret_query = "my private search"
    response = await client.get(
        "/api/v2/stats/clicks",
        params={
            "hashids[]": tenant.hashid,
            "from": "20250301",
            "to": "20250302",
            "q": secret_query,
        },
        headers={**tenant.token, "X-Request-ID": "req-42", "X-Forwarded-For": "203.0.113.9"},
    )
    assert response.status_code == 200
    [record_] = [r for r in caplog.records if r.name == "searchstats.access"]
    line = JsonLines().format(record_)
    assert "\n" not in line
    fields: Mapping[str, object] = orjson.loads(line)
    assert fields["request_id"] == "req-42"
    assert fields["level"] == "INFO"
    assert fields["logger"] == "searchstats.access"
    assert (fields["method"], fields["path"], fields["status"]) == (
        "GET",
        "/api/v2/stats/clicks",
        200,
    )
    assert fields["route"] == "/api/v2/stats/clicks"
    assert isinstance(fields["duration_ms"], float)
    assert str(fields["time"]).endswith("+00:00")
    # Neither the key, the query string (what users searched), the address nor the User-Agent.
    for private in (tenant.api_key, "private", "203.0.113", "127.0.0.1", BROWSER_UA, "Chrome"):
        assert private not in line


def test_other_lines_carry_the_request_id_they_were_logged_under() -> None:
    from app.http.json_logs import request_id

    token_ = request_id.set("abc")
    try:
        record_ = logging.LogRecord("app.x", logging.ERROR, __file__, 1, "failed %s", ("x",), None)
        fields = orjson.loads(JsonLines().format(record_))
    finally:
        request_id.reset(token_)
    assert (fields["message"], fields["request_id"], fields["level"]) == (
        "failed x",
        "abc",
        "ERROR",
    )
    assert "method" not in fields


def test_json_lines_time_is_the_records_millisecond() -> None:
    formatter = JsonLines()
    times = []
    for created in (1733300000.1239, 1733300000.1231, 1733300000.9999, 1733300001.0004, 0.0005):
        record_ = logging.makeLogRecord({"msg": "x"})
        record_.created = created
        times.append(orjson.loads(formatter.format(record_))["time"])
    assert times == [
        "2024-12-04T08:13:20.123+00:00",
        "2024-12-04T08:13:20.123+00:00",
        "2024-12-04T08:13:20.999+00:00",
        "2024-12-04T08:13:21.000+00:00",
        "1970-01-01T00:00:00.000+00:00",
    ]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_access_log_lines_can_be_turned_off_and_nothing_else_goes(
    runtime: Runtime, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="searchstats.access")
    quiet = runtime.settings.model_copy(update={"access_log": False})
    transport = httpx.ASGITransport(app=create_app(quiet, runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.post(
            "/api/v2/stats/visit",
            json={**VISIT, "hashid": tenant.hashid},
            headers={**tenant.token, "X-Request-ID": "req-quiet"},
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == "req-quiet"
        metrics = await scrape(http)
    assert not [r for r in caplog.records if r.name == "searchstats.access"]
    route = {"route": "/api/v2/stats/visit", "method": "POST"}
    assert value(metrics, "searchstats_request_duration_seconds_count", **route) == 1
