"""The long-lived collaborators a request needs, built once per process by the app factory."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from app.auth.addresses import ClientAddresses
from app.auth.credentials import Authenticator
from app.auth.keys import KeyVault, resolve_secret
from app.auth.policies import EnginePolicy
from app.broker.base import Broker
from app.broker.memory import MemoryBroker
from app.domain.event_ids import EventIds
from app.domain.user_agents import client_traits
from app.services.health import ReadinessProbe
from app.services.limits import RateLimits
from app.services.metrics import Metrics
from app.settings import Settings
from app.storage.database import Database, open_database
from app.storage.recorder import Recorder


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    database: Database
    recorder: Recorder
    authenticator: Authenticator
    engines: EnginePolicy
    vault: KeyVault
    broker: Broker
    limits: RateLimits
    addresses: ClientAddresses
    readiness: ReadinessProbe
    event_ids: EventIds
    metrics: Metrics = field(default_factory=Metrics)

    async def start(self) -> None:
        client_traits("Mozilla/5.0 (warm-up)")  # load the User-Agent rules before traffic
        await self.broker.start()
        await self.recorder.start()
        self.metrics.start(subscribers=lambda: self.broker.subscriber_count)

    async def stop(self) -> None:
        await self.recorder.stop()  # commits what was submitted: nothing acknowledged is lost
        await self.metrics.stop()
        await self.broker.stop()
        await self.limits.stop()
        await self.readiness.stop()
        await self.database.dispose()


def build_runtime(settings: Settings, *, secret: str | None = None) -> Runtime:
    """The collaborators, keyed by ``secret`` (default: the service's, made on first use)."""
    database = open_database(settings)
    secret = secret or resolve_secret(settings)
    vault = KeyVault(secret)
    namespace = redis_namespace(secret)
    # One flusher per worker: SQLite has a single writer, and on PostgreSQL concurrent batches
    # would only queue on the same hot rollup rows (measured: no gain from four).
    flushers = 1
    metrics = Metrics()
    recorder = Recorder(
        database,
        max_batch=settings.batch_max_events,
        flushers=flushers,
        on_commit=metrics.observe_batch,
    )
    return Runtime(
        settings=settings,
        database=database,
        recorder=recorder,
        authenticator=Authenticator(
            database,
            vault,
            cache_seconds=settings.credential_cache_seconds,
            lookup_seconds=settings.lookup_seconds,
        ),
        engines=EnginePolicy(
            database,
            anonymous_engine=settings.anonymous_engine,
            lookup_seconds=settings.lookup_seconds,
        ),
        vault=vault,
        broker=_broker(settings, namespace),
        limits=RateLimits(settings, namespace=namespace),
        addresses=ClientAddresses(trusted_proxies=settings.trusted_proxies, secret=secret),
        readiness=ReadinessProbe(
            database,
            recorder,
            timeout=settings.ready_timeout_seconds,
            connect_timeout=settings.db_connect_timeout_seconds,
        ),
        event_ids=EventIds(secret),
        metrics=metrics,
    )


def redis_namespace(secret: str) -> str:
    """This deployment's name in a Redis that others may share: the same on every worker of
    the deployment (they share the secret key), another for a deployment with another secret.
    A keyed digest: it tells nothing of the secret."""
    return hmac.new(secret.encode(), b"searchstats redis namespace", "sha256").hexdigest()[:16]


def _broker(settings: Settings, namespace: str) -> Broker:
    if settings.broker_url:  # validated: a Redis URL
        from app.broker.redis import RedisBroker

        return RedisBroker(settings.broker_url, namespace=namespace)
    return MemoryBroker()
