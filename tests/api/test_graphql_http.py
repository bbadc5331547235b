"""/graphql over HTTP as GraphQL over HTTP has it: what a request must be, and what is refused
before anything runs, with the contract's codes and statuses."""

from __future__ import annotations

import logging

import httpx
import pytest

from app.services.runtime import Runtime
from graphql_schema.extensions import OPERATION_NAME_NEEDED
from graphql_schema.http import NOT_AN_OBJECT
from tests.api.helpers import stored_events
from tests.conftest import Tenant

VISIT = 'mutation Visit { recordVisit(input: {store: "s"}) { id } }'
TWO = VISIT + " query Engines { engines { hashid } }"


def codes(response: httpx.Response) -> list[str]:
    return [error["extensions"]["code"] for error in response.json()["errors"]]


@pytest.mark.parametrize("body", [b"5", b'"x"', b"null", b"true"])
async def test_a_body_that_is_not_a_json_object_is_bad_params(
    client: httpx.AsyncClient, tenant: Tenant, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {**tenant.token, "Content-Type": "application/json"}
    with caplog.at_level(logging.ERROR):
        response = await client.post("/graphql", content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == NOT_AN_OBJECT
    assert codes(response) == ["bad_params"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_several_operations_without_a_name_run_none(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    for name in (None, ""):  # an empty name is no name (GraphQL over HTTP)
        body = {"query": TWO, "operationName": name}
        response = await client.post("/graphql", json=body, headers=tenant.token)
        assert response.json()["errors"][0]["message"] == OPERATION_NAME_NEEDED
        assert codes(response) == ["bad_params"]
    assert await stored_events(runtime) == []
    named = await client.post(
        "/graphql", json={"query": TWO, "operationName": "Engines"}, headers=tenant.token
    )
    assert named.json() == {"data": {"engines": [{"hashid": tenant.hashid}]}}
    assert await stored_events(runtime) == []


async def test_an_empty_operation_name_is_no_name(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    body = {"query": VISIT, "operationName": ""}
    response = await client.post("/graphql", json=body, headers=tenant.token)
    assert "errors" not in response.json()
    assert len(await stored_events(runtime)) == 1


async def test_a_mutation_over_get_is_405_and_runs_nothing(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    response = await client.get("/graphql", params={"query": VISIT}, headers=tenant.token)
    assert (response.status_code, response.headers["Allow"]) == (405, "GET, POST")
    assert codes(response) == ["bad_params"]
    assert response.json()["errors"][0]["message"] == "a mutation is sent with POST, not GET"
    assert await stored_events(runtime) == []
    query = await client.get(
        "/graphql", params={"query": "{ engines { hashid } }"}, headers=tenant.token
    )
    assert query.json() == {"data": {"engines": [{"hashid": tenant.hashid}]}}


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_another_method_is_405_with_the_methods_allowed(
    client: httpx.AsyncClient, tenant: Tenant, method: str
) -> None:
    response = await client.request(method, "/graphql", json={"query": VISIT}, headers=tenant.token)
    assert (response.status_code, response.headers["Allow"]) == (405, "GET, POST")
    assert codes(response) == ["bad_params"]


async def test_a_browser_may_send_apollo_clients_headers(client: httpx.AsyncClient) -> None:
    asked = "authorization,content-type,apollographql-client-name,apollographql-client-version"
    preflight = {
        "Origin": "https://dashboard.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": asked + ",apollo-require-preflight",
    }
    response = await client.options("/graphql", headers=preflight)
    assert response.status_code == 200
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in preflight["Access-Control-Request-Headers"].split(","):
        assert header in allowed


async def test_graphql_is_at_its_path_alone(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """/graphql/anything is no GraphQL endpoint (it answered as one, GraphiQL included)."""
    for path in ("/graphql/anything", "/graphql/x/y"):
        response = await client.post(path, json={"query": "{ __typename }"}, headers=tenant.token)
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
    slash = await client.post("/graphql/", json={"query": "{ __typename }"}, headers=tenant.token)
    assert (slash.status_code, slash.headers["location"]) == (307, "http://testserver/graphql")


BATCH = "mutation($e: [EventInput!]!) { recordEvents(input: $e) { id } }"


@pytest.mark.parametrize(
    ("wrong", "where"),
    [
        ({"visit": {"store": "s"}, "search": {"query": "q"}}, "[6]"),  # two kinds
        ({}, "[6]"),  # none
        ({"visit": None}, "[6].visit"),  # a kind without its value
    ],
)
async def test_a_batch_names_the_event_that_is_not_exactly_one_kind(
    client: httpx.AsyncClient,
    tenant: Tenant,
    runtime: Runtime,
    wrong: dict[str, object],
    where: str,
) -> None:
    events: list[dict[str, object]] = [{"visit": {"store": "s"}}] * 10
    events[6] = wrong
    response = await client.post(
        "/graphql", json={"query": BATCH, "variables": {"e": events}}, headers=tenant.token
    )
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "bad_params"
    assert f"Variable '$e' has invalid value at {where}: Within OneOf" in error["message"]
    assert "exactly one field must be specified" in error["message"]
    assert await stored_events(runtime) == []


async def test_a_literal_batch_points_at_the_event_that_is_not_exactly_one_kind(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    document = 'mutation { recordEvents(input: [{visit: {store: "a"}}, {}]) { id } }'
    response = await client.post("/graphql", json={"query": document}, headers=tenant.token)
    [error] = response.json()["errors"]  # one error, not one from each of two rules
    assert error["locations"] == [{"line": 1, "column": document.index("{}") + 1}]
    assert error["extensions"]["code"] == "bad_params"


@pytest.mark.parametrize("content_type", ["APPLICATION/JSON", "Application/Json; Charset=UTF-8"])
async def test_the_media_type_is_read_in_any_case(
    client: httpx.AsyncClient, tenant: Tenant, content_type: str
) -> None:
    response = await client.post(
        "/graphql",
        content=b'{"query": "{ engines { hashid } }"}',
        headers={**tenant.token, "Content-Type": content_type},
    )
    assert response.json() == {"data": {"engines": [{"hashid": tenant.hashid}]}}


@pytest.mark.parametrize("name", ["variables", "extensions"])
async def test_a_get_parameter_that_is_not_json_is_named_not_taken_for_a_body(
    client: httpx.AsyncClient, tenant: Tenant, name: str
) -> None:
    params = {"query": "{ engines { hashid } }", name: "{nope"}
    response = await client.get("/graphql", params=params, headers=tenant.token)
    assert response.status_code == 400
    assert codes(response) == ["bad_params"]
    assert response.json()["errors"][0]["message"] == f"the {name} parameter is not valid JSON"
