"""Seeding events for stats tests straight through the record service."""

from __future__ import annotations

from datetime import datetime

from app.auth.principal import Principal
from app.domain.events import EventDraft, EventKind
from app.services.record import Client, RecordResult, record_events
from app.services.runtime import Runtime
from tests.conftest import BROWSER_UA, Tenant

BROWSER = Client(door="test", user_agent=BROWSER_UA)


async def principal_of(runtime: Runtime, tenant: Tenant) -> Principal:
    return await runtime.authenticator.authenticate(f"Token {tenant.api_key}")


async def seed(
    runtime: Runtime, tenant: Tenant, drafts: list[EventDraft], client: Client = BROWSER
) -> list[RecordResult]:
    return await record_events(
        runtime=runtime, principal=await principal_of(runtime, tenant), drafts=drafts, client=client
    )


def search(at: datetime, query: str = "q", results: int = 5, **extra: object) -> EventDraft:
    return EventDraft(
        kind=EventKind.SEARCH,
        occurred_at=at,
        query=query,
        result_count=results,
        **extra,  # type: ignore[arg-type]
    )


def click(at: datetime, query_id: str | None, rank: int, document: str = "d") -> EventDraft:
    return EventDraft(
        kind=EventKind.CLICK, occurred_at=at, query_id=query_id, rank=rank, document_id=document
    )
