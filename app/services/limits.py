"""Rate limits: one rule for every door, counted per account (or anonymous client).

Reads (stats, REST GETs, GraphQL queries and subscriptions) and writes (REST POSTs, GraphQL
mutations) have separate budgets, each a moving window (rates written as the ``limits`` library
reads them). One account's burst uses its own budget only: the key is the account the credential
proves, not the credential itself, so a key and a JWT of one account share a budget. Callers
without a credential (DSpace's anonymous doors, and failed credentials) are counted by the
pseudonym of their address; a failed credential as a read, whatever the door.

Counters live in this worker's memory (app/services/local_window.py), or in Redis (``limits``'
moving window) when ``SEARCHSTATS_BROKER_URL`` is a Redis URL, so that every worker enforces one
shared limit. Their keys carry the deployment's namespace (``runtime.redis_namespace``):
two deployments on one Redis database never count each other's accounts. When Redis does not
answer, writes are admitted (an event is never lost to the limiter) and reads are counted in
this worker's memory, so each worker allows the full read rate on its own until Redis is back;
Redis is tried again a few seconds later.
"""

from __future__ import annotations

import logging
import math
import time
from enum import StrEnum

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from app.auth.credentials import Authenticator
from app.auth.principal import Principal
from app.errors import NotAuthenticated, TooManyRequests
from app.services.local_window import LocalMovingWindow
from app.settings import Settings

log = logging.getLogger(__name__)

REDIS_TIMEOUT_SECONDS = 0.5
# After Redis fails, how long requests are counted locally before Redis is tried again.
REDIS_RETRY_SECONDS = 5.0
KEY_PREFIX = "searchstats-limits"


class Access(StrEnum):
    READ = "read"
    WRITE = "write"


class RateLimits:
    """Admits or refuses one request of a subject; built once per worker."""

    def __init__(self, settings: Settings, *, namespace: str) -> None:
        self._rates: dict[Access, RateLimitItem] = {
            Access.READ: parse(settings.read_rate_limit),
            Access.WRITE: parse(settings.write_rate_limit),
        }
        self._local = LocalMovingWindow()
        self._shared: MovingWindowRateLimiter | None = None
        self._pool: object | None = None
        self._shared_down_until = 0.0
        self._outage = False  # Redis failed, and has not answered since: logged once
        if settings.broker_url:  # validated: a Redis URL
            self._shared = self._redis_limiter(settings.broker_url, namespace)

    def _redis_limiter(self, url: str, namespace: str) -> MovingWindowRateLimiter:
        import redis.asyncio as aioredis

        # Our own pool, so that stop() can close its connections.
        pool = aioredis.ConnectionPool.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        self._pool = pool
        storage = RedisStorage(
            "async+" + url,
            implementation="redispy",
            wrap_exceptions=True,
            key_prefix=f"{KEY_PREFIX}:{namespace}",
            connection_pool=pool,  # type: ignore[arg-type]
        )
        return MovingWindowRateLimiter(storage)

    @property
    def shared(self) -> bool:
        """Whether the counters are shared through Redis."""
        return self._shared is not None

    async def stop(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()  # type: ignore[attr-defined]

    async def admit(self, subject: str, access: Access) -> None:
        """Count one request of the subject, or refuse it with ``TooManyRequests``."""
        rate = self._rates[access]
        if self._shared is not None:
            allowed = await self._hit_shared(rate, subject, access)
            if allowed is not None:
                if not allowed:
                    raise self._refusal(
                        rate, access, await self._shared_wait(rate, access, subject)
                    )
                return
            if access is Access.WRITE:
                return  # Redis does not answer: an event is never lost to the limiter
        # ``access`` is its own value (a str enum): its ``.value`` is a slower lookup.
        if not self._local.hit(rate, access, subject):
            raise self._refusal(rate, access, self._local.seconds_until_free(rate, access, subject))

    @staticmethod
    def _refusal(rate: RateLimitItem, access: Access, seconds: float) -> TooManyRequests:
        # Retry-After is in whole seconds, at least one.
        return TooManyRequests(
            f"over the {access.value} rate limit of {rate}", retry_after=max(1, math.ceil(seconds))
        )

    async def admit_caller(self, principal: Principal | None, client: str, access: Access) -> None:
        """Count one request of an account, or of the client's address when its credential
        failed: that is a guess, counted as a read whatever the door (a wrong key sent to a door
        that writes would otherwise be given the write rate, 1000 a second by default)."""
        if principal is None:
            await self.admit(client_subject(client), Access.READ)
        else:
            await self.admit(account_subject(principal), access)

    async def _hit_shared(self, rate: RateLimitItem, subject: str, access: Access) -> bool | None:
        """The shared counters' answer; None while Redis does not answer."""
        assert self._shared is not None
        if time.monotonic() < self._shared_down_until:
            return None
        try:
            allowed = await self._shared.hit(rate, access.value, subject)
        except StorageError as error:
            self._shared_failed(error)
            return None
        if self._outage:
            self._outage = False
            log.info("rate limits: Redis answers again; the counters are shared again")
        return allowed

    def _shared_failed(self, error: StorageError) -> None:
        # Logged as the outage begins, not again at each retry (every few seconds, per worker).
        if not self._outage:
            self._outage = True
            log.warning(
                "rate limits: Redis does not answer (%s); until it does, writes are admitted "
                "and reads counted by this worker alone (Redis is tried again every %.0f s)",
                type(error.storage_error).__name__,
                REDIS_RETRY_SECONDS,
            )
        self._shared_down_until = time.monotonic() + REDIS_RETRY_SECONDS

    async def _shared_wait(self, rate: RateLimitItem, access: Access, subject: str) -> float:
        """Seconds until the shared window frees a slot."""
        assert self._shared is not None
        try:
            stats = await self._shared.get_window_stats(rate, access.value, subject)
        except StorageError:
            return 1.0
        return stats.reset_time - time.time()


def account_subject(principal: Principal) -> str:
    return f"account:{principal.account_id}"


def client_subject(pseudonym: str) -> str:
    return f"client:{pseudonym}"


async def admitted_caller(
    *,
    authenticator: Authenticator,
    limits: RateLimits,
    authorization: str | None,
    client: str,
    access: Access,
) -> Principal:
    """The account a credential proves, within its rate limit (429), or a 401.

    Failed credentials count against the client's address, so guessing them is rate limited too.
    """
    try:
        principal = await authenticator.authenticate(authorization)
    except NotAuthenticated:
        await limits.admit_caller(None, client, access)
        raise
    await limits.admit_caller(principal, client, access)
    return principal
