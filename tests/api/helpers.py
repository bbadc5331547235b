"""Shared helpers for the GraphQL tests: send an operation, read back what was stored."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlmodel import col

from app.services.runtime import Runtime
from app.storage.models import Engine, Event, Rollup
from tests.conftest import Tenant

RESULT_FIELDS = "{ id status duplicate queryId }"
# What a REST door's 401 names in WWW-Authenticate: the schemes it takes.
CHALLENGE = 'Bearer realm="searchstats", Token realm="searchstats"'
INPUT_TYPES = {
    "recordView": "ViewInput",
    "recordSearch": "SearchInput",
    "recordVisit": "VisitInput",
    "recordClick": "ClickInput",
    "recordFeedback": "FeedbackInput",
}
RECORD_EVENTS = f"""
mutation($input: [EventInput!]!) {{
  recordEvents(input: $input) {RESULT_FIELDS}
}}"""


def record(mutation: str) -> str:
    """The document of a single-event mutation taking its input as ``$input``."""
    return (
        f"mutation($input: {INPUT_TYPES[mutation]}!) {{\n"
        f"  {mutation}(input: $input) {RESULT_FIELDS}\n"
        "}"
    )


async def gql(
    client: httpx.AsyncClient,
    credential: Tenant | Mapping[str, str] | None,
    query: str,
    **variables: Any,
) -> dict[str, Any]:
    """POST one operation; ``credential`` is a tenant (Token auth) or the headers to send."""
    headers = credential.token if isinstance(credential, Tenant) else dict(credential or {})
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def data(body: Mapping[str, Any], field: str) -> Any:
    """The field's result, after checking the operation raised no error."""
    assert "errors" not in body, body
    return body["data"][field]


def error_code(body: Mapping[str, Any]) -> str:
    """The single error's code, after checking nothing was returned."""
    assert body.get("data") is None, body
    errors = body["errors"]
    assert len(errors) == 1, errors
    code: str = errors[0]["extensions"]["code"]
    return code


def error_message(body: Mapping[str, Any]) -> str:
    message: str = body["errors"][0]["message"]
    return message


async def stored_events(runtime: Runtime) -> list[Event]:
    async with runtime.database.sessions() as session:
        return list((await session.execute(select(Event).order_by(col(Event.id)))).scalars())


def shown_id(runtime: Runtime, event: Event) -> str:
    """The id the service gives a stored event."""
    assert event.id is not None
    return runtime.event_ids.of(event.id)


async def engine_id(runtime: Runtime, hashid: str) -> int:
    async with runtime.database.sessions() as session:
        statement = select(col(Engine.id)).where(col(Engine.hashid) == hashid)
        found = (await session.execute(statement)).scalar_one()
    assert found is not None
    return found


async def rollup_totals(runtime: Runtime, hashid: str | None = None) -> dict[str, int]:
    """Each metric's count summed over buckets and devices, for one engine or all of them."""
    statement = select(col(Rollup.metric), func.sum(col(Rollup.count))).group_by(col(Rollup.metric))
    if hashid is not None:
        statement = statement.where(col(Rollup.engine_id) == await engine_id(runtime, hashid))
    async with runtime.database.sessions() as session:
        rows = (await session.execute(statement)).all()
    return {metric: int(total) for metric, total in rows}
