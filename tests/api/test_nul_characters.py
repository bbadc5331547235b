"""NUL characters, which GraphQL string literals may carry and PostgreSQL cannot store nor
compare: refused with bad_params on every field that reaches SQL, on both databases."""

from __future__ import annotations

import httpx
import pytest

from app.services.runtime import Runtime
from tests.api.helpers import error_code, error_message, gql, stored_events
from tests.conftest import Tenant

NUL = "\\u0000"  # as written inside a GraphQL string literal
DOCUMENTS = {
    "search-query": f'mutation {{ recordSearch(input: {{query: "a{NUL}"}}) {{ id }} }}',
    "filter-value": (
        f'mutation {{ recordSearch(input: {{query: "q", appliedFilters: [{{filter: "f", '
        f'operator: "o", value: "v{NUL}"}}]}}) {{ id }} }}'
    ),
    "sort-by": (
        f'mutation {{ recordSearch(input: {{query: "q", sort: {{by: "b{NUL}", order: "asc"}}}}) '
        "{ id } }"
    ),
    "click-document": (
        f'mutation {{ recordClick(input: {{documentId: "d{NUL}", rank: 0}}) {{ id }} }}'
    ),
    "stats-query": (
        f'{{ stats(from: "2025-01-01", to: "2025-01-02", filter: {{query: "a{NUL}"}}) '
        "{ searches { totalCount } } }"
    ),
    "stats-index": (
        f'{{ stats(from: "2025-01-01", to: "2025-01-02", filter: {{index: ["i{NUL}"]}}) '
        "{ clicks { totalCount } } }"
    ),
    "stats-document": (
        f'{{ stats(from: "2025-01-01", to: "2025-01-02", filter: {{document: "d{NUL}"}}) '
        "{ clicks { totalCount } } }"
    ),
    "forget-user": f'mutation {{ forgetUser(userId: "u{NUL}") {{ deletedEvents }} }}',
}


@pytest.mark.parametrize("case", DOCUMENTS)
async def test_nul_in_a_graphql_literal_is_bad_params(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant, case: str
) -> None:
    body = await gql(client, tenant, DOCUMENTS[case])
    assert error_code(body) == "bad_params", body
    assert "NUL" in error_message(body) or "userId" in error_message(body)
    assert await stored_events(runtime) == []
