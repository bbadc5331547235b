"""Forgetting a user, and keeping raw events no longer than the retention period.

Rules: an account forgets users in its own engines only (all of them, or those it names); the
operator's command line may forget a user in every account. Each forgetting erases in rounds, a
short transaction each, so that writers are held off one round at a time; stats see every count
true after each round, and none of the user's events after the last. Pruning deletes raw events
older than the cut-off, engine by engine in short transactions, and keeps the rollups.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlmodel import col

from app.auth.policies import EnginePolicy
from app.auth.principal import Principal
from app.broker.base import Broker
from app.domain.events import BOUNDED_TEXT
from app.errors import BadParams, NotFound
from app.services.record import change_channel, tell_account
from app.storage import directory, erasure
from app.storage.database import Database
from app.storage.models import Engine
from app.storage.outages import unavailable_when_down

MAX_USER_ID = dict(BOUNDED_TEXT)["user_id"]
MAX_RETENTION_DAYS = 100 * 366


async def forget_user(
    *,
    database: Database,
    policy: EnginePolicy,
    broker: Broker,
    principal: Principal,
    user_id: str,
    engines: Sequence[str] = (),
) -> int:
    """Delete the user's events in the caller's engines (or those named); how many.

    Live stats of those engines are told once it is committed: their answers change too. So
    they are when a round fails after others committed: what those deleted is gone for good.
    """
    _check_user_id(user_id)
    records = await policy.engines_for(principal, list(engines) or None)
    erased = _Erased()
    try:
        await _erase(database, [record.id for record in records], user_id, erased)
    finally:
        if erased.count:
            await _tell_live_stats(broker, principal, records)
    return erased.count


async def _tell_live_stats(
    broker: Broker, principal: Principal, records: Sequence[directory.EngineRecord]
) -> None:
    for record in records:
        await broker.notify(change_channel(record.hashid), "erased")
    await tell_account(broker, principal.account_id, "erased")


async def forget_user_everywhere(
    *, database: Database, user_id: str, account: str | None = None
) -> int:
    """The operator's forgetting: in one account's engines, or in every account's."""
    _check_user_id(user_id)
    if account is None:
        engine_ids = await _all_engines(database)
    else:
        async with unavailable_when_down(), database.sessions() as session:
            owner = await directory.account_by_name(session, account)
            if owner is None:
                raise NotFound(f"account {account!r} does not exist")
            engine_ids = [e.id for e in await directory.engines_of_account(session, owner.id)]
    erased = _Erased()
    await _erase(database, engine_ids, user_id, erased)
    return erased.count


async def prune(*, database: Database, older_than_days: int, now: datetime | None = None) -> int:
    """Delete raw events that occurred more than ``older_than_days`` ago; rollups stay."""
    if not 1 <= older_than_days <= MAX_RETENTION_DAYS:
        raise BadParams(f"the retention must be 1 to {MAX_RETENTION_DAYS} days")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
    deleted = 0
    for engine_id in await _all_engines(database):
        while True:
            async with unavailable_when_down(), database.engine.begin() as conn:
                count = await erasure.prune_before(conn, engine_id=engine_id, cutoff=cutoff)
            deleted += count
            if count < erasure.PRUNE_CHUNK:
                break
    return deleted


async def _all_engines(database: Database) -> list[int]:
    async with unavailable_when_down(), database.sessions() as session:
        ids = (await session.execute(select(col(Engine.id)).order_by(col(Engine.id)))).scalars()
        return [engine_id for engine_id in ids if engine_id is not None]


@dataclass(slots=True)
class _Erased:
    """How many events the rounds committed so far, known also when a later one fails."""

    count: int = 0


async def _erase(database: Database, engine_ids: list[int], user_id: str, erased: _Erased) -> None:
    """Every event of the user in these engines, in rounds of a short transaction each (writers
    wait for one round, not for the whole erasure), counted in ``erased`` as each commits. A
    failure leaves the rounds before it done, every count true: asking again erases the rest."""
    loop = asyncio.get_running_loop()
    while True:
        began = loop.time()
        async with unavailable_when_down(), database.engine.begin() as conn:
            count = await erasure.erase_user(conn, engine_ids=engine_ids, user_id=user_id)
        erased.count += count
        if count < erasure.ERASE_CHUNK:
            return
        # As long a pause as the round took: the writers kept waiting get in before the next
        # round (on SQLite they retry on its back-off, sleeps of up to 100 ms, each at most as
        # long as they have waited so far), and the erasure takes at most half of the time.
        await asyncio.sleep(loop.time() - began)


def _check_user_id(user_id: str) -> None:
    if not user_id or len(user_id) > MAX_USER_ID or "\x00" in user_id:
        raise BadParams(f"userId must be 1 to {MAX_USER_ID} characters")
