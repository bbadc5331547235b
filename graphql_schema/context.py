"""One typed context per request (or per websocket connection): factories, never a session."""

from __future__ import annotations

from dataclasses import dataclass, field

import strawberry

from app.auth.principal import Principal
from app.services.record import Client
from app.services.runtime import Runtime


@dataclass
class Context:
    runtime: Runtime
    authorization: str | None
    user_agent: str | None
    _principal: Principal | None = field(default=None, repr=False)

    async def principal(self) -> Principal:
        """The caller's account; authenticated on first use, refused with a 401 code."""
        if self._principal is None:
            self._principal = await self.runtime.authenticator.authenticate(self.authorization)
        return self._principal

    @property
    def client(self) -> Client:
        return Client(door="graphql", user_agent=self.user_agent)


Info = strawberry.Info[Context, None]
