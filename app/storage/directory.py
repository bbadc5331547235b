"""The SQL for accounts, their keys and engines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from app.storage.models import Account, ApiKey, Engine


@dataclass(frozen=True, slots=True)
class EngineRecord:
    id: int
    hashid: str
    account_id: int
    name: str


@dataclass(frozen=True, slots=True)
class AccountRecord:
    id: int
    name: str


def _engine(row: Engine) -> EngineRecord:
    assert row.id is not None
    return EngineRecord(id=row.id, hashid=row.hashid, account_id=row.account_id, name=row.name)


async def insert_account(session: AsyncSession, *, name: str) -> AccountRecord:
    account = Account(name=name, created_at=datetime.now(UTC))
    session.add(account)
    await session.flush()
    assert account.id is not None
    return AccountRecord(id=account.id, name=account.name)


async def insert_api_key(
    session: AsyncSession, *, account_id: int, digest: str, ciphertext: str
) -> None:
    session.add(
        ApiKey(
            account_id=account_id,
            digest=digest,
            ciphertext=ciphertext,
            created_at=datetime.now(UTC),
        )
    )
    await session.flush()


async def insert_engine(
    session: AsyncSession, *, account_id: int, hashid: str, name: str
) -> EngineRecord:
    engine = Engine(hashid=hashid, account_id=account_id, name=name, created_at=datetime.now(UTC))
    session.add(engine)
    await session.flush()
    return _engine(engine)


async def account_by_name(session: AsyncSession, name: str) -> AccountRecord | None:
    row = (
        await session.execute(select(Account).where(col(Account.name) == name))
    ).scalar_one_or_none()
    return None if row is None or row.id is None else AccountRecord(id=row.id, name=row.name)


async def account_by_key_digest(session: AsyncSession, digest: str) -> AccountRecord | None:
    statement = select(Account).join(ApiKey).where(col(ApiKey.digest) == digest)
    row = (await session.execute(statement)).scalar_one_or_none()
    return None if row is None or row.id is None else AccountRecord(id=row.id, name=row.name)


async def delete_api_key(session: AsyncSession, digest: str) -> AccountRecord | None:
    """Delete the key with this digest; the account it was a key of, or None if none was."""
    account = await account_by_key_digest(session, digest)
    if account is not None:
        await session.execute(delete(ApiKey).where(col(ApiKey.digest) == digest))
    return account


async def every_key_ciphertext(session: AsyncSession) -> list[str]:
    statement = select(col(ApiKey.ciphertext)).order_by(col(ApiKey.id))
    return list((await session.execute(statement)).scalars())


async def key_ciphertexts(session: AsyncSession, account_id: int) -> list[str]:
    statement = select(col(ApiKey.ciphertext)).where(col(ApiKey.account_id) == account_id)
    return list((await session.execute(statement)).scalars())


async def count_accounts(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(Account))).scalar_one())


async def engine_by_hashid(session: AsyncSession, hashid: str) -> EngineRecord | None:
    row = (
        await session.execute(select(Engine).where(col(Engine.hashid) == hashid))
    ).scalar_one_or_none()
    return None if row is None else _engine(row)


async def engines_of_account(session: AsyncSession, account_id: int) -> list[EngineRecord]:
    """An account's engines, oldest first: the first is its default engine."""
    statement = select(Engine).where(col(Engine.account_id) == account_id).order_by(col(Engine.id))
    return [_engine(row) for row in (await session.execute(statement)).scalars()]


async def engines_of_account_on(conn: AsyncConnection, account_id: int) -> list[EngineRecord]:
    """The same as engines_of_account, on an open connection (a stats read's own)."""
    t = Engine.__table__  # type: ignore[attr-defined]
    statement = (
        select(t.c.id, t.c.hashid, t.c.account_id, t.c.name)
        .where(t.c.account_id == account_id)
        .order_by(t.c.id)
    )
    return [EngineRecord(*row) for row in await conn.execute(statement)]


async def first_engine(session: AsyncSession) -> EngineRecord | None:
    row = (
        await session.execute(select(Engine).order_by(col(Engine.id)).limit(1))
    ).scalar_one_or_none()
    return None if row is None else _engine(row)
