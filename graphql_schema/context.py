"""One typed context per request (or per websocket connection): factories, never a session."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import strawberry

from app.auth.principal import Principal
from app.errors import NotAuthenticated
from app.services.expiry import Recheck
from app.services.limits import Access
from app.services.live import LiveStats
from app.services.record import Client
from app.services.runtime import Runtime


@dataclass
class Context:
    runtime: Runtime
    live: LiveStats
    authorization: str | None
    user_agent: str | None
    # A websocket's connection_init payload, set by Strawberry before on_ws_connect.
    connection_params: dict[str, Any] | None = None
    # The pseudonym of the client's address (app.auth.addresses), for rate limits.
    client_address: str = "unknown"
    _principal: Principal | None = field(default=None, repr=False)
    # A websocket's, once connected: its credential is checked again each time it is asked for.
    _connected: bool = field(default=False, repr=False)

    async def principal(self) -> Principal:
        """The caller's account; authenticated on first use, refused with a 401 code.

        A request keeps its caller until it is answered. A websocket asks the workers' memory
        of credentials again each time: remembered here as well, a revoked key would go on
        starting subscriptions, queries and mutations for up to that memory's time again after
        the worker had forgotten it (what runs already ends at its own next check: ``recheck``).
        Once a JWT's ``exp`` passes, it is refused like any expired credential.
        """
        if self._principal is None or self._connected:
            return await self._authenticated()
        if self._principal.expired:
            raise NotAuthenticated("The credential has expired")
        return self._principal

    async def _authenticated(self) -> Principal:
        """The credential checked now (through the worker's memory of credentials)."""
        self._principal = await self.runtime.authenticator.authenticate(self.authorization)
        if self._principal.expired:
            raise NotAuthenticated("The credential has expired")
        return self._principal

    def recheck(self) -> Recheck | None:
        """A websocket's: how the subscriptions it runs check its credential again, so that one
        revoked ends them too (a request's context: None, it ends with its request)."""
        if not self._connected:
            return None
        return Recheck(self.runtime.settings.credential_cache_seconds, self._authenticated)

    async def admit(self, access: Access) -> None:
        """Count one operation against the caller's rate limit (429 past it).

        Without a valid credential it counts against the client's address; the fields that need
        a credential then answer 401 themselves.
        """
        try:
            principal: Principal | None = await self.principal()
        except NotAuthenticated:
            principal = None
        await self.runtime.limits.admit_caller(principal, self.client_address, access)

    async def connect(self) -> Principal:
        """A websocket's caller: the connection_init credential, else the upgrade header's.

        A failed credential counts against the client's address, as at the HTTP doors: past
        the read rate it is refused with ``TooManyRequests`` instead of ``NotAuthenticated``.
        """
        params = self.connection_params or {}
        credential = params.get("Authorization", params.get("authorization"))
        if isinstance(credential, str) and credential:
            self.authorization, self._principal = credential, None
        try:
            principal = await self.principal()
        except NotAuthenticated:
            await self.runtime.limits.admit_caller(None, self.client_address, Access.READ)
            raise
        self._connected = True
        return principal

    @property
    def client(self) -> Client:
        return Client(door="graphql", user_agent=self.user_agent)


Info = strawberry.Info[Context, None]
