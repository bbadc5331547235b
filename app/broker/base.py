"""What every broker offers: publish after commit, subscribe for as long as a client listens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from app.errors import TooManyRequests

Message = dict[str, Any]


class SlowSubscriber(TooManyRequests):
    """The subscriber fell further behind than its queue allows and was dropped."""

    default_message = "The subscription fell too far behind and was dropped; subscribe again"


class Broker(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, channel: str, messages: list[Message]) -> None:
        """Hand committed events to subscribers; never raises for a fan-out failure."""
        ...

    async def notify(self, channel: str, change: str) -> None:
        """Tell the channel's subscribers that something changed (``{"type": change}``), no
        more: they read the rest afresh. The same notice may reach them once for several."""
        ...

    def may_reach(self, channel: str) -> bool:
        """Whether a message published on the channel now can reach a subscriber: False lets
        a publisher skip building it. A broker shared between workers cannot tell: True."""
        ...

    def subscribe(self, channels: list[str]) -> AbstractAsyncContextManager[AsyncIterator[Message]]:
        """Messages published on any of the channels from now on; ends with SlowSubscriber."""
        ...

    @property
    def subscriber_count(self) -> int:
        """Live subscriptions on this worker (a subscription on several channels counts once)."""
        ...
