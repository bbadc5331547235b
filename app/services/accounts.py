"""Accounts, their API keys and engines."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.keys import (
    KeyVault,
    create_secret,
    key_digest,
    new_api_key,
    read_secret,
    secret_key_path,
)
from app.auth.policies import EnginePolicy
from app.auth.principal import Principal
from app.domain.tenancy import check_account_name, check_hashid, new_hashid
from app.errors import BadParams, NotFound
from app.settings import Settings
from app.storage import directory
from app.storage.database import Database
from app.storage.directory import EngineRecord

DEFAULT_ACCOUNT = "default"


@dataclass(frozen=True, slots=True)
class NewAccount:
    name: str
    api_key: str


@dataclass(frozen=True, slots=True)
class Bootstrap:
    account: NewAccount
    engine: EngineRecord


async def create_account(*, database: Database, vault: KeyVault, name: str) -> NewAccount:
    """Create an account and its first API key; the key is shown now and never again."""
    check_account_name(name)
    try:
        async with database.sessions() as session, session.begin():
            if await directory.account_by_name(session, name) is not None:
                raise BadParams(f"account {name!r} already exists")
            account = await directory.insert_account(session, name=name)
            api_key = await _give_key(session, vault, account.id)
    except IntegrityError:
        # The same name created concurrently, between the check and the insert.
        raise BadParams(f"account {name!r} already exists") from None
    return NewAccount(name=name, api_key=api_key)


async def add_api_key(*, database: Database, vault: KeyVault, account: str) -> str:
    """Give an account one more API key (its others keep working); shown now and never again."""
    async with database.sessions() as session, session.begin():
        owner = await directory.account_by_name(session, account)
        if owner is None:
            raise NotFound(f"account {account!r} does not exist")
        return await _give_key(session, vault, owner.id)


async def _give_key(session: AsyncSession, vault: KeyVault, account_id: int) -> str:
    """A new API key for the account, stored as its digest (for lookup) and sealed (for JWTs)."""
    api_key = new_api_key()
    await directory.insert_api_key(
        session, account_id=account_id, digest=key_digest(api_key), ciphertext=vault.seal(api_key)
    )
    return api_key


async def revoke_api_key(*, database: Database, api_key: str) -> str:
    """Delete an API key: it and the JWTs signed with it are refused from then on (by each
    worker once its memory of the credential, ``SEARCHSTATS_CREDENTIAL_CACHE_SECONDS``, is
    over). The name of the account it was a key of."""
    async with database.sessions() as session, session.begin():
        account = await directory.delete_api_key(session, key_digest(api_key.strip()))
    if account is None:
        raise NotFound("no account has this API key")
    return account.name


async def create_engine(
    *, database: Database, account: str, hashid: str | None = None, name: str = ""
) -> EngineRecord:
    """Add an engine to an account; an account's first engine is its default engine."""
    hashid = check_hashid(hashid) if hashid is not None else new_hashid()
    if len(name) > 255:
        raise BadParams("engine name must be at most 255 characters")
    try:
        async with database.sessions() as session, session.begin():
            owner = await directory.account_by_name(session, account)
            if owner is None:
                raise NotFound(f"account {account!r} does not exist")
            if await directory.engine_by_hashid(session, hashid) is not None:
                raise BadParams(f"engine {hashid} already exists")
            return await directory.insert_engine(
                session, account_id=owner.id, hashid=hashid, name=name
            )
    except IntegrityError:
        raise BadParams(f"engine {hashid} already exists") from None


async def service_vault(*, database: Database, settings: Settings) -> KeyVault:
    """The vault of the service's secret key, checked against the API keys already stored.

    A secret key is made only for a database that holds no API key yet: for one that does, a
    new or different secret would open none of them, and every JWT would be refused (401) while
    the service looked healthy.
    """
    async with database.sessions() as session:
        stored = await directory.every_key_ciphertext(session)
    # Read after the keys: a node starting alongside makes the secret before it stores a key.
    secret = read_secret(settings)
    if secret is None:
        if stored:
            missing = secret_key_path(settings)
            raise BadParams(
                "the database holds API keys, but there is no secret key to open them "
                f"({missing} does not exist): restore SEARCHSTATS_SECRET_KEY_FILE or set "
                "SEARCHSTATS_SECRET_KEY"
            )
        return KeyVault(create_secret(settings))
    vault = KeyVault(secret)
    if stored and all(vault.open(ciphertext) is None for ciphertext in stored):
        source = "SEARCHSTATS_SECRET_KEY" if settings.secret_key else str(secret_key_path(settings))
        raise BadParams(
            f"the secret key ({source}) does not open the stored API keys: restore "
            "SEARCHSTATS_SECRET_KEY_FILE or set SEARCHSTATS_SECRET_KEY to the one they were "
            "made with"
        )
    return vault


async def bootstrap(*, database: Database, vault: KeyVault) -> Bootstrap | None:
    """On a database without any account, create ``default`` with one engine."""
    async with database.sessions() as session:
        if await directory.count_accounts(session) > 0:
            return None
    try:
        account = await create_account(database=database, vault=vault, name=DEFAULT_ACCOUNT)
    except BadParams:  # "already exists": made by another node starting at the same moment
        return None
    engine = await create_engine(database=database, account=DEFAULT_ACCOUNT, name="default")
    return Bootstrap(account=account, engine=engine)


async def engine_missing(*, database: Database, hashid: str | None) -> bool:
    """Whether an engine a setting names (``SEARCHSTATS_ANONYMOUS_ENGINE``) does not exist."""
    if not hashid:
        return False
    async with database.sessions() as session:
        return await directory.engine_by_hashid(session, hashid) is None


async def account_engines(*, policy: EnginePolicy, principal: Principal) -> list[EngineRecord]:
    """The caller's engines, default engine first."""
    return await policy.engines_for(principal, None)
