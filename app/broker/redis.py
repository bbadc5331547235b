"""The Redis broker: events recorded by any worker reach subscribers on every worker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.broker.base import Message
from app.broker.memory import DEFAULT_QUEUE_LIMIT, MemoryBroker

log = logging.getLogger(__name__)
# After a failed publish, skip Redis for this long: ingestion must not wait on a dead broker.
RETRY_AFTER_SECONDS = 1.0


class RedisBroker:
    """Publishes through Redis; one pattern subscription per worker feeds a local fan-out.

    Pub/sub channels are global to a Redis server, whatever database the URL selects: they are
    named after that database and the deployment's ``namespace`` (the same on all its workers),
    so that another deployment on the same Redis hears none of this one's events.
    """

    def __init__(self, url: str, *, namespace: str, queue_limit: int = DEFAULT_QUEUE_LIMIT) -> None:
        self._redis = aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        database = self._redis.connection_pool.connection_kwargs.get("db") or 0
        self.prefix = f"searchstats:{database}:{namespace}:"
        self._local = MemoryBroker(queue_limit=queue_limit)
        self._listener: asyncio.Task[None] | None = None
        self._down_until = 0.0
        self.listening = asyncio.Event()

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
        if time.monotonic() >= self._down_until:
            try:
                await self._redis.publish(self.prefix + channel, orjson.dumps(messages))
            except (RedisError, OSError) as error:
                self._failed(error)
            else:
                if self._down_until:
                    log.warning("publishing to Redis again")
                    self._down_until = 0.0
                return
        # Redis is down: subscribers on this worker still see its own events.
        self._local.deliver(channel, messages)

    def _failed(self, error: Exception) -> None:
        """Events are committed already: nothing is lost, only other workers' live views miss
        them. Said once per outage, not once per event."""
        if not self._down_until:
            log.warning(
                "could not publish to Redis (%s): live events stay on this worker until it answers",
                type(error).__name__,
            )
        self._down_until = time.monotonic() + RETRY_AFTER_SECONDS

    def may_reach(self, channel: str) -> bool:
        return True  # other workers' subscribers are not known here

    @property
    def subscriber_count(self) -> int:
        return self._local.subscriber_count

    @asynccontextmanager
    async def subscribe(self, channels: list[str]) -> AsyncIterator[AsyncIterator[Message]]:
        async with self._local.subscribe(channels) as messages:
            yield messages

    async def _listen(self) -> None:
        lost = False  # an outage is said once when it starts and once when it ends
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.psubscribe(self.prefix + "*")
                if lost:
                    log.warning("Redis subscription restored: other workers' events arrive again")
                    lost = False
                self.listening.set()
                async for item in pubsub.listen():
                    if item.get("type") == "pmessage":
                        channel = item["channel"].decode()[len(self.prefix) :]
                        self._local.deliver(channel, orjson.loads(item["data"]))
            except (RedisError, OSError) as error:
                self.listening.clear()
                if not lost:
                    log.warning(
                        "Redis subscription lost (%s); retrying every second",
                        type(error).__name__,
                    )
                    lost = True
                await asyncio.sleep(1)
            finally:
                # Typed only in recent redis-py: through a typed name, both versions check.
                close: Callable[[], Awaitable[None]] = pubsub.aclose
                with suppress(RedisError, OSError):
                    await close()
