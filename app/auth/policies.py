"""Who may touch which engine: an account reaches its own engines and no others.

| caller                         | records into                        | reads stats of        |
| ------------------------------ | ----------------------------------- | --------------------- |
| account credential             | its engines (default: its first)    | its engines           |
| anonymous (DSpace doors only)  | the configured anonymous engine     | nothing               |
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth.principal import Principal
from app.domain.events import HASHID
from app.errors import AccessDenied, BadParams, NotFound
from app.single_flight import SingleFlight
from app.storage import directory
from app.storage.database import Database
from app.storage.directory import EngineRecord
from app.storage.outages import unavailable_when_down


class EnginePolicy:
    """Resolves engine hashids for a caller; engines never change owner, so they are cached."""

    def __init__(
        self,
        database: Database,
        *,
        anonymous_engine: str | None,
        lookup_seconds: float | None = None,
    ) -> None:
        self._database = database
        self._anonymous_engine = anonymous_engine
        self._by_hashid: dict[str, EngineRecord] = {}
        self._defaults: dict[int, EngineRecord] = {}
        self._first: EngineRecord | None = None  # of every account: anonymous events' engine
        # A new worker's first requests all miss the cache at once: one query between them,
        # waited for at most ``lookup_seconds`` (then 503).
        self._lookups: SingleFlight[EngineRecord] = SingleFlight(within=lookup_seconds)

    async def engine_for(self, principal: Principal, hashid: str | None) -> EngineRecord:
        """The engine an event goes to: the one named, else the account's default engine."""
        if hashid is None:
            return await self._default_engine(principal)
        engine = await self._lookup(hashid)
        if engine.account_id != principal.account_id:
            raise AccessDenied(f"engine {hashid} belongs to another account")
        return engine

    def known_engine_for(self, principal: Principal, hashid: str | None) -> EngineRecord | None:
        """``engine_for``'s answer when it is known without a lookup, else None (then
        ``engine_for`` looks it up, or refuses). Most events name an engine already seen."""
        if hashid is None:
            return self._defaults.get(principal.account_id)
        engine = self._by_hashid.get(hashid)
        return engine if engine is not None and engine.account_id == principal.account_id else None

    async def engines_for(
        self,
        principal: Principal,
        hashids: Sequence[str] | None,
        *,
        conn: AsyncConnection | None = None,
    ) -> list[EngineRecord]:
        """The engines a read covers: those named, else every engine of the account.

        With ``conn`` the account's engines are read on that open connection (a stats read's
        own), without taking another one from the pool.
        """
        if not hashids:
            if conn is not None:
                return await directory.engines_of_account_on(conn, principal.account_id)
            async with unavailable_when_down(), self._database.sessions() as session:
                return await directory.engines_of_account(session, principal.account_id)
        return [await self.engine_for(principal, hashid) for hashid in dict.fromkeys(hashids)]

    async def anonymous_target(self) -> EngineRecord:
        """Where an anonymous event goes: the configured engine, else the first one created.

        The first one created stays the first (engines are not deleted): looked up once.
        """
        if self._anonymous_engine:
            return await self._lookup(self._anonymous_engine)
        engine = self._first
        if engine is None:
            engine = await self._lookups.run("first", self._first_engine)
        return engine

    async def _first_engine(self) -> EngineRecord:
        async with unavailable_when_down(), self._database.sessions() as session:
            engine = await directory.first_engine(session)
        if engine is None:
            raise NotFound("no engine exists yet")
        self._first = engine
        return engine

    async def _lookup(self, hashid: str) -> EngineRecord:
        if not HASHID.fullmatch(hashid):
            raise BadParams(f"invalid hashid {hashid[:64]!r}: expected 32 lowercase hex characters")
        engine = self._by_hashid.get(hashid)
        if engine is None:
            engine = await self._lookups.run(("hashid", hashid), self._engine_by_hashid, hashid)
        return engine

    async def _engine_by_hashid(self, hashid: str) -> EngineRecord:
        async with unavailable_when_down(), self._database.sessions() as session:
            engine = await directory.engine_by_hashid(session, hashid)
        if engine is None:
            raise NotFound(f"search engine {hashid} not found")
        self._by_hashid[hashid] = engine
        return engine

    async def _default_engine(self, principal: Principal) -> EngineRecord:
        engine = self._defaults.get(principal.account_id)
        if engine is None:
            account = principal.account_id
            engine = await self._lookups.run(("default", account), self._first_engine_of, account)
        return engine

    async def _first_engine_of(self, account_id: int) -> EngineRecord:
        async with unavailable_when_down(), self._database.sessions() as session:
            engines = await directory.engines_of_account(session, account_id)
        if not engines:
            raise NotFound("the account has no engine")
        engine = self._defaults[account_id] = engines[0]
        return engine
