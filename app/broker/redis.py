"""The Redis broker: events recorded by any worker reach subscribers on every worker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from app.broker.base import Message
from app.broker.memory import DEFAULT_QUEUE_LIMIT, MemoryBroker

log = logging.getLogger(__name__)
# After a failed publish, skip Redis for this long.
RETRY_AFTER_SECONDS = 1.0
# Publishes waiting for Redis; past this, events go to this worker's subscribers only.
OUTBOX_LIMIT = 10_000
# On stop, how long the events still waiting may take to go out.
DRAIN_SECONDS = 1.0
# A subscription quiet this long pings Redis, and is taken for lost without an answer as long.
HEARTBEAT_SECONDS = 10.0


class RedisBroker:
    """Publishes through Redis; one pattern subscription per worker feeds a local fan-out.

    Pub/sub channels are global to a Redis server, whatever database the URL selects: they are
    named after that database and the deployment's ``namespace`` (the same on all its workers),
    so that another deployment on the same Redis hears none of this one's events.

    Publishing never waits for Redis: events are queued, and one task sends what has gathered
    in one pipelined round trip, in order. A Redis that stops answering (a frozen process, a
    stalled network) held each acknowledgement for the socket timeout (5 s) instead.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self._redis = aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        database = self._redis.connection_pool.connection_kwargs.get("db") or 0
        self.prefix = f"searchstats:{database}:{namespace}:"
        self._local = MemoryBroker(queue_limit=queue_limit)
        self._listener: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._outbox: deque[tuple[str, list[Message]]] = deque()
        # Notices waiting to be sent, each once however often it was given (an ordered set).
        self._notices: dict[tuple[str, str], None] = {}
        self._queued = asyncio.Event()
        self._drained = asyncio.Event()  # nothing queued, nothing being sent
        self._drained.set()
        self._down_until = 0.0
        self._heartbeat = heartbeat_seconds
        self.listening = asyncio.Event()

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="redis-broker")
        self._publisher = asyncio.create_task(self._publish_queued(), name="redis-publisher")

    async def stop(self) -> None:
        if self._publisher is not None and not self._publisher.done():
            with suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), DRAIN_SECONDS)
        for task in (self._publisher, self._listener):
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        await self._local.stop()
        await self._redis.aclose()

    async def publish(self, channel: str, messages: list[Message]) -> None:
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._local.deliver(channel, messages)  # Redis is far behind: this worker's own
            return
        self._outbox.append((channel, messages))
        self._drained.clear()
        self._queued.set()

    async def notify(self, channel: str, change: str) -> None:
        """Queued as a publication is, but once: told after every recording request, a notice
        published each time would be one more message per request for every worker to read."""
        self._notices[(channel, change)] = None
        self._drained.clear()
        self._queued.set()

    async def _publish_queued(self) -> None:
        """Send what was queued, in order; this worker's subscribers have it from Redis, or
        straight away while Redis is down or this worker's subscription there is not on."""
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self._outbox or self._notices:
                batch = [*self._outbox, *_notices(self._notices)]
                self._outbox.clear()
                self._notices.clear()
                # Redis hands a publication only to the subscriptions made before it.
                heard_back = self.listening.is_set()
                if time.monotonic() >= self._down_until and await self._sent(batch) and heard_back:
                    continue
                for channel, messages in batch:
                    self._local.deliver(channel, messages)
            self._drained.set()

    async def _sent(self, batch: list[tuple[str, list[Message]]]) -> bool:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for channel, messages in batch:
                    pipe.publish(self.prefix + channel, orjson.dumps(messages))
                await pipe.execute()
        except (RedisError, OSError) as error:
            self._failed(error)
            return False
        except Exception:  # the publisher must go on: it is the only one
            log.exception("unexpected error publishing to Redis")
            return False
        if self._down_until:
            log.warning("publishing to Redis again")
            self._down_until = 0.0
        return True

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
                await self._receive(pubsub)
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

    async def _receive(self, pubsub: PubSub) -> None:
        """Deliver what the subscription brings; raise once Redis no longer answers it.

        A connection can die without a word (a NAT or load balancer dropping an idle flow, a
        Redis restarted behind a network partition): waiting on it alone, this worker would
        never hear other workers' events again. Quiet for a heartbeat, it pings Redis.
        """
        pinged = False
        while True:
            item = await pubsub.get_message(timeout=self._heartbeat)
            if item is None:
                if pinged:
                    raise RedisConnectionError("Redis did not answer the subscription's ping")
                await pubsub.ping()
                pinged = True
                continue
            pinged = False
            if item.get("type") == "pmessage":
                self._deliver(item["channel"], item["data"])

    def _deliver(self, channel: bytes, data: bytes) -> None:
        """One message to this worker's subscribers. What is not a message of this service
        (published under its channels by a tool or another program) is logged and skipped:
        raised, it ended the listener, and the worker heard no other worker again."""
        try:
            name = channel.decode()[len(self.prefix) :]
            messages = orjson.loads(data)
        except (UnicodeDecodeError, orjson.JSONDecodeError):
            messages = None
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            log.warning(
                "skipped a Redis message on %r: not a message of this service", channel[:200]
            )
            return
        self._local.deliver(name, messages)


def _notices(waiting: dict[tuple[str, str], None]) -> list[tuple[str, list[Message]]]:
    return [(channel, [{"type": change}]) for channel, change in waiting]
