"""What every broker offers: publish after commit, subscribe for as long as a client listens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Message = dict[str, Any]


class Broker(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, channel: str, messages: list[Message]) -> None: ...

    def subscribe(
        self, channels: list[str]
    ) -> AbstractAsyncContextManager[AsyncIterator[Message]]: ...
