"""One typed context per request (or per websocket connection): factories, never a session."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import strawberry

from app.auth.principal import Principal
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
    _principal: Principal | None = field(default=None, repr=False)

    async def principal(self) -> Principal:
        """The caller's account; authenticated on first use, refused with a 401 code."""
        if self._principal is None:
            self._principal = await self.runtime.authenticator.authenticate(self.authorization)
        return self._principal

    async def connect(self) -> Principal:
        """A websocket's caller: the connection_init credential, else the upgrade header's."""
        params = self.connection_params or {}
        credential = params.get("Authorization", params.get("authorization"))
        if isinstance(credential, str) and credential:
            self.authorization, self._principal = credential, None
        return await self.principal()

    @property
    def client(self) -> Client:
        return Client(door="graphql", user_agent=self.user_agent)


Info = strawberry.Info[Context, None]
