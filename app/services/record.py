"""Recording events: validate -> bind to engines -> enrich -> group-commit -> publish."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.auth.principal import Principal
from app.broker.base import Broker, Message
from app.domain.event_ids import EventIds
from app.domain.events import EventDraft, EventKind, validate_events
from app.domain.user_agents import ClientTraits, client_traits
from app.errors import AccessDenied, BadParams, NotFound
from app.services.runtime import Runtime
from app.storage.directory import EngineRecord
from app.storage.writes import NewEvent, Written


@dataclass(frozen=True, slots=True)
class Client:
    """What the request tells about who sent the events; only derived traits are kept."""

    door: str
    user_agent: str | None = None
    # Traits already known (an import of exported events): the User-Agent is not read then.
    traits: ClientTraits | None = None


@dataclass(frozen=True, slots=True)
class RecordResult:
    row: int  # the row number: never shown outside, see app.domain.event_ids
    duplicate: bool
    query_id: str | None
    event_ids: EventIds = field(repr=False)
    status: str = "registered"

    @property
    def id(self) -> str:
        """The event's id, worked out only when a caller shows it (the REST doors do not)."""
        return self.event_ids.of(self.row)


async def record_events(
    *,
    runtime: Runtime,
    principal: Principal | None,
    drafts: Sequence[EventDraft],
    client: Client,
    batch: bool = False,
) -> list[RecordResult]:
    """Store the events all together or not at all; return once they are committed.

    In a ``batch`` every problem names the index of the event it concerns, even in a batch of one.
    """
    now = datetime.now(UTC)
    validate_events(list(drafts), now=now, batch=batch)
    return await record_valid_events(
        runtime=runtime, principal=principal, drafts=drafts, client=client, batch=batch, now=now
    )


async def record_valid_events(
    *,
    runtime: Runtime,
    principal: Principal | None,
    drafts: Sequence[EventDraft],
    client: Client,
    batch: bool = False,
    now: datetime,
) -> list[RecordResult]:
    """``record_events`` for drafts already validated at ``now``: bind, enrich, group-commit,
    publish."""
    engines = await _engines(runtime, principal, drafts, batch)
    traits = client.traits or client_traits(
        client.user_agent, with_credential=principal is not None
    )
    events = [
        new_event(draft, engine, traits, now, client.door)
        for draft, engine in zip(drafts, engines, strict=True)
    ]
    written = await store_new_events(runtime=runtime, events=events, engines=engines)
    ids = runtime.event_ids
    return [RecordResult(w.id, w.duplicate, w.query_id, ids) for w in written]


async def store_new_events(
    *, runtime: Runtime, events: Sequence[NewEvent], engines: Sequence[EngineRecord]
) -> list[Written]:
    """Group-commit events already bound to their ``engines`` and enriched (a bulk import builds
    its rows itself), and publish them to whoever can hear (the metrics count them as their
    batch commits)."""
    written = await runtime.recorder.record(events)
    await _publish(runtime, events, engines, written)
    return written


async def _engines(
    runtime: Runtime, principal: Principal | None, drafts: Sequence[EventDraft], batch: bool
) -> list[EngineRecord]:
    """Each draft's engine, each one named (or the default) bound once per request: a batch's
    events mostly share one."""
    bound: dict[str | None, EngineRecord] = {}
    engines = []
    for index, draft in enumerate(drafts):
        engine = bound.get(draft.engine)
        if engine is None:
            engine = (
                runtime.engines.known_engine_for(principal, draft.engine) if principal else None
            ) or await _engine_for(runtime, principal, draft, index if batch else None)
            bound[draft.engine] = engine
        engines.append(engine)
    return engines


async def _engine_for(
    runtime: Runtime, principal: Principal | None, draft: EventDraft, index: int | None
) -> EngineRecord:
    try:
        return await _engine_of(runtime, principal, draft)
    except (AccessDenied, NotFound, BadParams) as error:
        if index is None:
            raise
        raise type(error)(f"events[{index}]: {error.message}") from None


async def _engine_of(
    runtime: Runtime, principal: Principal | None, draft: EventDraft
) -> EngineRecord:
    if principal is None:
        return await runtime.engines.anonymous_target()
    return await runtime.engines.engine_for(principal, draft.engine)


def new_event(
    draft: EventDraft, engine: EngineRecord, traits: ClientTraits, now: datetime, door: str
) -> NewEvent:
    kind = draft.kind
    return NewEvent(
        engine_id=engine.id,
        kind=kind,
        occurred_at=(draft.occurred_at or now).astimezone(UTC),
        received_at=now,
        door=door,
        device=traits.device.value,
        is_bot=traits.is_bot,
        event_id=draft.event_id,
        # "" names no session or user: kept, it would count as one in sessions and users.
        session_id=draft.session_id or None,
        user_id=draft.user_id or None,
        query=draft.query if kind is EventKind.SEARCH else None,
        # A search gets the id that later clicks and feedback carry to link themselves to it
        # (an imported search keeps the one it had, so that its clicks still link to it).
        query_id=_query_id(draft),
        result_count=draft.effective_result_count if kind is EventKind.SEARCH else None,
        document_id=draft.target_id or draft.document_id or draft.dfid,
        content_source_id=draft.content_source_id,
        product_type=_product_type(draft),
        rank=draft.rank,
        page=draft.page,
        score=draft.score,
        payload=_payload(draft),
    )


def _query_id(draft: EventDraft) -> str | None:
    if draft.kind is not EventKind.SEARCH:
        return draft.query_id
    return draft.query_id or uuid.uuid4().hex


def _product_type(draft: EventDraft) -> str | None:
    if draft.kind is not EventKind.CLICK:
        return None
    return draft.product_type.value if draft.product_type else "search"


def _payload(draft: EventDraft) -> dict[str, Any]:
    """What no stats filter or group on, kept as the client sent it."""
    fields: dict[str, Any] = {
        "targetType": draft.target_type,
        "referrer": draft.referrer,
        "scope": draft.scope,
        "dsoType": draft.dso_type,
        "configuration": draft.configuration,
        "appliedFilters": [asdict(f) for f in draft.applied_filters] or None,
        "sort": asdict(draft.sort) if draft.sort else None,
        "page": _page(draft),
        "clickedObject": draft.clicked_object,
        "store": draft.store,
        "url": draft.url,
        "pageType": draft.page_type,
        "event": draft.label,
        **draft.extra,
    }
    return {key: value for key, value in fields.items() if value is not None}


def _page(draft: EventDraft) -> dict[str, int] | None:
    if draft.page_info is None:
        return None
    page = draft.page_info
    values = {
        "size": page.size,
        "totalElements": page.total_elements,
        "totalPages": page.total_pages,
        "number": page.number,
    }
    return {key: value for key, value in values.items() if value is not None}


async def _publish(
    runtime: Runtime,
    events: Sequence[NewEvent],
    engines: Sequence[EngineRecord],
    written: Sequence[Written],
) -> None:
    """Tell live subscribers about what was newly stored (never about duplicates).

    Checked after the commit, as the in-process broker delivers: a message that can reach no
    one is not built (with no subscriber, the usual case, that is most of the cost)."""
    stored = [e for e, outcome in zip(engines, written, strict=True) if not outcome.duplicate]
    for account_id in sorted({engine.account_id for engine in stored}):
        await tell_account(runtime.broker, account_id, "recorded")
    channels = {engine.hashid: engine_channel(engine.hashid) for engine in engines}
    heard = {hashid for hashid, channel in channels.items() if runtime.broker.may_reach(channel)}
    if not heard:
        return
    by_channel: defaultdict[str, list[Message]] = defaultdict(list)
    for event, engine, outcome in zip(events, engines, written, strict=True):
        if outcome.duplicate or engine.hashid not in heard:
            continue
        by_channel[channels[engine.hashid]].append(
            {
                "id": runtime.event_ids.of(outcome.id),
                "engine": engine.hashid,
                "type": event.kind.value,
                "occurredAt": event.occurred_at.isoformat(),
                "queryId": outcome.query_id,
                "query": event.query,
                "documentId": event.document_id,
                "device": event.device,
                "isBot": event.is_bot,
            }
        )
    for channel, messages in by_channel.items():
        await runtime.broker.publish(channel, messages)


def engine_channel(hashid: str) -> str:
    return f"events:{hashid}"


def account_channel(account_id: int) -> str:
    """Where a change to any engine of the account is told: live stats of all its engines
    follow it, so that an engine created after they started moves them too."""
    return f"account:{account_id}"


async def tell_account(broker: Broker, account_id: int, change: str) -> None:
    """Tell what follows the account's channel that one of its engines changed."""
    await broker.notify(account_channel(account_id), change)


def change_channel(hashid: str) -> str:
    """Where an engine's events removed (a user forgotten) are told: live stats follow it, live
    event streams do not."""
    return f"changes:{hashid}"
