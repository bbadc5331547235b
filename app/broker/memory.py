"""The in-process broker: one worker, no shared state to configure."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.broker.base import Message

log = logging.getLogger(__name__)


class Subscription:
    """A bounded queue: a subscriber that cannot keep up is dropped, never waited for."""

    def __init__(self, limit: int) -> None:
        self.queue: asyncio.Queue[Message | None] = asyncio.Queue(limit)
        self.dropped = False

    def offer(self, message: Message) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped = True
            self.queue = asyncio.Queue(1)
            self.queue.put_nowait(None)

    async def messages(self) -> AsyncIterator[Message]:
        while True:
            message = await self.queue.get()
            if message is None:
                raise SlowSubscriber()
            yield message


class SlowSubscriber(Exception):
    """The subscriber fell further behind than its queue allows."""


class MemoryBroker:
    def __init__(self, *, queue_limit: int = 1000) -> None:
        self._queue_limit = queue_limit
        self._subscribers: defaultdict[str, set[Subscription]] = defaultdict(set)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._subscribers.clear()

    async def publish(self, channel: str, messages: list[Message]) -> None:
        self.deliver(channel, messages)

    def deliver(self, channel: str, messages: list[Message]) -> None:
        for subscription in tuple(self._subscribers.get(channel, ())):
            for message in messages:
                subscription.offer(message)

    @property
    def subscriber_count(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values())

    @asynccontextmanager
    async def subscribe(self, channels: list[str]) -> AsyncIterator[AsyncIterator[Message]]:
        subscription = Subscription(self._queue_limit)
        for channel in channels:
            self._subscribers[channel].add(subscription)
        try:
            yield subscription.messages()
        finally:
            for channel in channels:
                subscribers = self._subscribers.get(channel)
                if subscribers is not None:
                    subscribers.discard(subscription)
                    if not subscribers:
                        del self._subscribers[channel]
