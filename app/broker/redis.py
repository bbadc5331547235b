"""The Redis broker: events recorded by any worker reach subscribers on every worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.broker.base import Message
from app.broker.memory import MemoryBroker

log = logging.getLogger(__name__)
CHANNEL_PREFIX = "searchstats:"


class RedisBroker:
    """Publishes through Redis; one pattern subscription per worker feeds a local fan-out."""

    def __init__(self, url: str, *, queue_limit: int = 1000) -> None:
        self._redis = aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._local = MemoryBroker(queue_limit=queue_limit)
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="redis-broker")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with suppress(asyncio.CancelledError):
                await self._listener
        await self._local.stop()
        await self._redis.aclose()

    async def publish(self, channel: str, messages: list[Message]) -> None:
        try:
            await self._redis.publish(CHANNEL_PREFIX + channel, orjson.dumps(messages))
        except (RedisError, OSError) as error:
            # Events are committed already; live views miss them but nothing is lost.
            log.warning("could not publish to Redis: %s", type(error).__name__)

    @asynccontextmanager
    async def subscribe(self, channels: list[str]) -> AsyncIterator[AsyncIterator[Message]]:
        async with self._local.subscribe(channels) as messages:
            yield messages

    async def _listen(self) -> None:
        while True:
            try:
                pubsub = self._redis.pubsub()
                await pubsub.psubscribe(CHANNEL_PREFIX + "*")
                async for item in pubsub.listen():
                    if item.get("type") != "pmessage":
                        continue
                    channel = item["channel"].decode()[len(CHANNEL_PREFIX) :]
                    self._local.deliver(channel, orjson.loads(item["data"]))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                log.warning("Redis subscription lost (%s); retrying", type(error).__name__)
                await asyncio.sleep(1)
