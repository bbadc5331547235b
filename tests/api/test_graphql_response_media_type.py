"""The response media type of GraphQL over HTTP, negotiated by ``Accept``.

A client that asks for ``application/graphql-response+json`` (Apollo Client 4, urql, graphql-http)
gets it, with that media type's statuses: a request that never ran (not a GraphQL request, a
document that does not parse or validate, variables that do not fit) is a 4xx without ``data``;
one that ran is a 200 whatever its field errors. Every other client gets ``application/json`` with
the statuses it always had.
"""

from __future__ import annotations

import httpx
import pytest

from app.services.runtime import Runtime
from graphql_schema.http import GRAPHQL_RESPONSE, negotiated_media_type
from tests.api.helpers import stored_events
from tests.conftest import Tenant

ASKS = {"Accept": GRAPHQL_RESPONSE}
VISIT = "mutation($s: String!) { recordVisit(input: {store: $s}) { id } }"


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/*", "application/json"),
        ("application/json", "application/json"),
        ("text/html", "application/json"),  # none acceptable: the default, not a 406
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        ("APPLICATION/GRAPHQL-RESPONSE+JSON", GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}, application/json;q=0.9", GRAPHQL_RESPONSE),  # Apollo Client 4
        (f"application/json;q=0.9, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE};q=0.5, application/json", "application/json"),
        (f"{GRAPHQL_RESPONSE};q=0, */*", "application/json"),
        (f"{GRAPHQL_RESPONSE}, application/graphql+json, application/json", GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE} ; q=0.8 , text/html", GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE};q=nonsense, application/json;q=0.5", "application/json"),
        (f"{GRAPHQL_RESPONSE}, application/json", GRAPHQL_RESPONSE),  # a tie: the first listed
        (f"application/json, {GRAPHQL_RESPONSE}", "application/json"),
    ],
)
def test_the_media_type_is_the_one_the_client_prefers(accept: str | None, chosen: str) -> None:
    assert negotiated_media_type(accept) == chosen


async def test_an_operation_that_ran_is_a_200_in_the_media_type_asked_for(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ engines { hashid } }"}, headers={**tenant.token, **ASKS}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == GRAPHQL_RESPONSE
    assert response.json() == {"data": {"engines": [{"hashid": tenant.hashid}]}}


async def test_a_field_error_is_a_200_with_data_null(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    """The operation ran: the error is the field's, with its path, and the status stays 200."""
    response = await client.post(
        "/graphql",
        json={"query": VISIT, "variables": {"s": ""}},
        headers={**tenant.token, **ASKS},
    )
    assert (response.status_code, response.headers["content-type"]) == (200, GRAPHQL_RESPONSE)
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["path"] == ["recordVisit"]
    assert body["errors"][0]["extensions"]["code"] == "bad_params"
    assert await stored_events(runtime) == []


@pytest.mark.parametrize(
    "request_body",
    [
        pytest.param({"query": "{"}, id="document does not parse"),
        pytest.param({"query": "{ noSuchField }"}, id="document does not validate"),
        pytest.param({"query": VISIT, "variables": {"s": 5}}, id="variable of the wrong type"),
        pytest.param({"query": VISIT}, id="required variable missing"),
        pytest.param(
            {"query": "query A { engines { hashid } } query B { __typename }"}, id="which"
        ),
    ],
)
async def test_a_document_that_cannot_run_is_a_400_without_data(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime, request_body: dict[str, object]
) -> None:
    response = await client.post("/graphql", json=request_body, headers={**tenant.token, **ASKS})
    assert (response.status_code, response.headers["content-type"]) == (400, GRAPHQL_RESPONSE)
    body = response.json()
    assert "data" not in body
    assert [error["extensions"]["code"] for error in body["errors"]] == ["bad_params"]
    assert await stored_events(runtime) == []


async def test_application_json_keeps_its_200_for_a_document_that_cannot_run(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for accept in ({}, {"Accept": "application/json"}, {"Accept": "*/*"}):
        response = await client.post(
            "/graphql", json={"query": "{"}, headers={**tenant.token, **accept}
        )
        assert (response.status_code, response.headers["content-type"]) == (
            200,
            "application/json",
        )
        assert response.json()["data"] is None


@pytest.mark.parametrize(
    "raw_body",
    [
        pytest.param(b'{ "not a JSON', id="not JSON"),
        pytest.param(b'{"qeury": "{ __typename }"}', id="no query"),
        pytest.param(b'{"query": {"obj": "ect"}}', id="query not a string"),
        pytest.param(b'{"query": "{ __typename }", "variables": "string"}', id="variables"),
        pytest.param(b'{"query": "{ __typename }", "extensions": [1]}', id="extensions"),
        pytest.param(b'{"query": "{ __typename }", "operationName": 0}', id="operationName"),
    ],
)
async def test_a_request_that_is_not_graphql_is_a_400_in_the_media_type_asked_for(
    client: httpx.AsyncClient, tenant: Tenant, raw_body: bytes
) -> None:
    headers = {**tenant.token, **ASKS, "Content-Type": "application/json"}
    response = await client.post("/graphql", content=raw_body, headers=headers)
    assert (response.status_code, response.headers["content-type"]) == (400, GRAPHQL_RESPONSE)
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "bad_params"


async def test_refusals_keep_their_status_in_the_media_type_asked_for(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    mutation_by_get = await client.get(
        "/graphql",
        params={"query": 'mutation { recordVisit(input: {store: "s"}) { id } }'},
        headers={**tenant.token, **ASKS},
    )
    assert (mutation_by_get.status_code, mutation_by_get.headers["content-type"]) == (
        405,
        GRAPHQL_RESPONSE,
    )
    put = await client.put("/graphql", json={"query": "{ __typename }"}, headers=ASKS)
    assert (put.status_code, put.headers["content-type"]) == (405, GRAPHQL_RESPONSE)


async def test_a_query_by_get_is_answered_in_the_media_type_asked_for(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.get(
        "/graphql", params={"query": "{ engines { hashid } }"}, headers={**tenant.token, **ASKS}
    )
    assert (response.status_code, response.headers["content-type"]) == (200, GRAPHQL_RESPONSE)
    assert response.json() == {"data": {"engines": [{"hashid": tenant.hashid}]}}
