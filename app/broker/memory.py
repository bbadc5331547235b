"""The in-process broker: one worker, no shared state to configure."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.broker.base import Message, SlowSubscriber

DEFAULT_QUEUE_LIMIT = 1000


class Subscription:
    """A bounded queue: a subscriber that cannot keep up is dropped, never waited for."""

    def __init__(self, channels: tuple[str, ...], limit: int) -> None:
        self.channels = channels
        self.queue: asyncio.Queue[Message | None] = asyncio.Queue(limit)
        self.dropped = False

    def offer(self, message: Message) -> bool:
        """Queue the message; False once the subscriber is (or has just been) dropped."""
        if self.dropped:
            return False
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            # Free the backlog at once; the reader finds the end mark when (if ever) it reads.
            self.dropped = True
            self.queue = asyncio.Queue(1)
            self.queue.put_nowait(None)
            return False
        return True

    async def messages(self) -> AsyncIterator[Message]:
        while True:
            message = await self.queue.get()
            if message is None or self.dropped:
                raise SlowSubscriber()
            yield message


class MemoryBroker:
    def __init__(self, *, queue_limit: int = DEFAULT_QUEUE_LIMIT) -> None:
        self._queue_limit = queue_limit
        self._subscribers: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._live: set[Subscription] = set()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._subscribers.clear()
        self._live.clear()

    async def publish(self, channel: str, messages: list[Message]) -> None:
        self.deliver(channel, messages)

    def deliver(self, channel: str, messages: list[Message]) -> None:
        """Offer the messages to the channel's subscribers without ever waiting for one."""
        for subscription in tuple(self._subscribers.get(channel, ())):
            for message in messages:
                if not subscription.offer(message):
                    self._forget(subscription)
                    break

    async def notify(self, channel: str, change: str) -> None:
        if channel in self._subscribers:
            self.deliver(channel, [{"type": change}])

    def may_reach(self, channel: str) -> bool:
        return channel in self._subscribers

    @property
    def subscriber_count(self) -> int:
        return len(self._live)

    @asynccontextmanager
    async def subscribe(self, channels: list[str]) -> AsyncIterator[AsyncIterator[Message]]:
        subscription = Subscription(tuple(dict.fromkeys(channels)), self._queue_limit)
        for channel in subscription.channels:
            self._subscribers[channel].add(subscription)
        self._live.add(subscription)
        try:
            yield subscription.messages()
        finally:
            self._forget(subscription)

    def _forget(self, subscription: Subscription) -> None:
        """Unregister once: a dropped subscriber costs nothing more to publishers."""
        if subscription not in self._live:
            return
        self._live.discard(subscription)
        for channel in subscription.channels:
            subscribers = self._subscribers.get(channel)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[channel]
