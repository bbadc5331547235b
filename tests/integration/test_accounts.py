"""Accounts and engines: names are unique even when created at the same moment."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from app.auth.principal import Principal
from app.domain.events import EventDraft, EventKind, event_problems
from app.errors import BadParams
from app.services import accounts
from app.services.runtime import Runtime


async def test_concurrent_creation_of_one_account_makes_one(runtime: Runtime) -> None:
    results = await asyncio.gather(
        *(
            accounts.create_account(database=runtime.database, vault=runtime.vault, name="race")
            for _ in range(5)
        ),
        return_exceptions=True,
    )
    created = [r for r in results if isinstance(r, accounts.NewAccount)]
    refused = [r for r in results if isinstance(r, BadParams)]
    assert (len(created), len(refused)) == (1, 4), results
    assert all(r.message == "account 'race' already exists" for r in refused)


async def test_concurrent_creation_of_one_engine_makes_one(runtime: Runtime) -> None:
    await accounts.create_account(database=runtime.database, vault=runtime.vault, name="acme")
    hashid = "0123456789abcdef0123456789abcdef"
    results = await asyncio.gather(
        *(
            accounts.create_engine(database=runtime.database, account="acme", hashid=hashid)
            for _ in range(5)
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(r, BadParams) for r in results) == 4, results


async def test_bootstrap_happens_once(runtime: Runtime) -> None:
    first = await accounts.bootstrap(database=runtime.database, vault=runtime.vault)
    assert first is not None
    assert first.account.name == "default"
    assert await accounts.bootstrap(database=runtime.database, vault=runtime.vault) is None


@pytest.mark.parametrize("name", ["acme\n", "acme\r\n", " acme", "acme\x00"])
async def test_an_account_name_with_a_line_end_or_other_character_is_refused(
    runtime: Runtime, name: str
) -> None:
    """A regular expression's ``$`` matches before a final line end: "acme" and a line end was
    an account of its own, which a JWT naming "acme" does not name."""
    with pytest.raises(BadParams, match="account name must be"):
        await accounts.create_account(database=runtime.database, vault=runtime.vault, name=name)


async def test_a_hashid_with_a_line_end_is_refused(runtime: Runtime) -> None:
    """A hashid and a line end was an engine on SQLite (a masked error on PostgreSQL, whose
    column is 32 characters), and as an event's engine a 404 for an engine not found."""
    await accounts.create_account(database=runtime.database, vault=runtime.vault, name="acme")
    hashid, database = "0123456789abcdef0123456789abcdef", runtime.database
    with pytest.raises(BadParams, match="invalid hashid"):
        await accounts.create_engine(database=database, account="acme", hashid=hashid + "\n")
    engine = await accounts.create_engine(database=database, account="acme", hashid=hashid)
    principal = Principal(account_id=engine.account_id, account_name="acme")
    with pytest.raises(BadParams, match="invalid hashid"):
        await runtime.engines.engine_for(principal, hashid + "\n")
    problems = event_problems(
        EventDraft(kind=EventKind.VISIT, store="main", engine=hashid + "\n"),
        now=datetime.now(UTC),
    )
    assert problems == ["engine must be 32 lowercase hexadecimal characters"]


async def test_first_starts_at_once_make_one_default_account(runtime: Runtime) -> None:
    """Nodes started together on a new database: each found no account; all but the first
    then failed to start ("account 'default' already exists")."""
    results = await asyncio.gather(
        *(accounts.bootstrap(database=runtime.database, vault=runtime.vault) for _ in range(3)),
        return_exceptions=True,
    )
    created = [r for r in results if isinstance(r, accounts.Bootstrap)]
    assert len(created) == 1, results
    assert results.count(None) == 2, results
