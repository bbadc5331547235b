"""Unexpected errors never reach a GraphQL client as they are, wherever they are raised."""

from __future__ import annotations

import httpx
import pytest

from graphql_schema.context import Context
from tests.conftest import Tenant


async def test_an_unexpected_error_in_the_rate_limit_check_is_masked(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: Context, access: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Context, "admit", broken)
    response = await client.post(
        "/graphql", json={"query": "{ engines { hashid } }"}, headers=tenant.token
    )
    assert "secret" not in response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "internal_error"
