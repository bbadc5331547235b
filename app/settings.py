"""Service settings, read from ``SEARCHSTATS_*`` environment variables."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

import limits
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.domain.events import HASHID

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./searchstats.db"
# The longest duration a setting may give, in seconds: 2**31 - 1 milliseconds, what PostgreSQL's
# statement_timeout and SQLite's busy timeout hold: past it PostgreSQL refuses the timeout (every
# stats question would fail) and SQLite takes it as 0 (a write would not wait for the lock).
MAX_SECONDS = 2_147_483
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)]
# The brokers the service can fan out through (and share rate limits in).
BROKER_SCHEMES = ("redis://", "rediss://")


class Settings(BaseSettings):
    """Everything an operator can set; each field is one row of the README's settings table."""

    model_config = SettingsConfigDict(env_prefix="SEARCHSTATS_", extra="ignore", frozen=True)

    database_url: str = DEFAULT_DATABASE_URL
    broker_url: str | None = None
    read_rate_limit: str = "20/second"
    write_rate_limit: str = "1000/second"
    secret_key: str | None = None
    secret_key_file: str | None = None  # default: beside the SQLite database (app.auth.keys)

    anonymous_engine: str | None = None
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    # Addresses or networks of the reverse proxies whose X-Forwarded-For is believed.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    db_pool_size: int = Field(default=10, ge=1)
    db_connect_timeout_seconds: Seconds = 5.0
    db_write_timeout_seconds: Seconds = 5.0
    stats_timeout_seconds: Seconds = 10.0
    ready_timeout_seconds: Seconds = 2.0

    batch_max_events: int = Field(default=2000, ge=1)
    credential_cache_seconds: float = Field(default=5.0, ge=0, le=MAX_SECONDS, allow_inf_nan=False)

    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    body_timeout_seconds: Seconds = 30.0
    log_format: Literal["json", "text"] = "json"
    access_log: bool = True
    graphql_max_depth: int = Field(default=12, ge=2)
    graphql_max_aliases: int = Field(default=30, ge=1)
    graphql_max_tokens: int = Field(default=10_000, ge=100)
    graphql_introspection: bool = True
    graphql_max_subscriptions: int = Field(default=20, ge=1)
    graphql_connection_init_timeout_seconds: Seconds = 10.0

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # a ValueError names the bad entry
        return value

    @field_validator("broker_url")
    @classmethod
    def _check_broker(cls, value: str | None) -> str | None:
        # A URL the service cannot use must not leave each worker quietly on its own broker and
        # rate limits: that is what the setting is there to prevent.
        if not value:
            return None
        if not value.startswith(BROKER_SCHEMES):
            schemes = " or ".join(BROKER_SCHEMES)
            raise ValueError(f"must start with {schemes} (unset: one process's own broker)")
        return value

    @field_validator("anonymous_engine")
    @classmethod
    def _check_anonymous_engine(cls, value: str | None) -> str | None:
        # Checked here, not per event: every anonymous DSpace event would be a 400 blaming its
        # client for what is the operator's setting.
        if not value:
            return None
        if not HASHID.fullmatch(value):
            raise ValueError("must be an engine's hashid, 32 lowercase hexadecimal digits")
        return value

    @field_validator("read_rate_limit", "write_rate_limit")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        # "20/second", "100 per minute", ...: a ValueError otherwise.
        rates = limits.parse_many(value)
        # ``limits`` also reads several rates ("10/second;100/minute"), of which only the first
        # would be kept, and "0/second": a window that refuses every request, and has no request
        # leaving it to say when to retry.
        if len(rates) != 1:
            raise ValueError("must be one rate, such as 20/second")
        if rates[0].amount < 1:
            raise ValueError("must allow at least one request in its window")
        return value

    @property
    def lookup_seconds(self) -> float:
        """The longest a request waits for a lookup of its credential or engine: a connection
        (the pool's wait, or connecting, and its ping), then one short statement, each within
        the connect timeout. Past it, the database is not answering: 503."""
        return 2 * self.db_connect_timeout_seconds

    @property
    def stats_wait_seconds(self) -> float:
        """The longest a request waits for a stats question: a connection, then the question,
        which a database that answers cancels at the stats deadline (408). Past it, the
        database is not answering: 503."""
        return self.db_connect_timeout_seconds + self.stats_timeout_seconds

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite database's file; None for PostgreSQL, a database in memory, or a URL the
        command line refuses."""
        try:
            url = make_url(self.database_url)
        except ArgumentError:
            return None
        database = url.database  # a URI filename's parameters are in url.query
        if url.get_backend_name() != "sqlite" or not database or database.startswith(":"):
            return None
        if url.query.get("mode") == "memory":
            return None
        return Path(database.removeprefix("file:"))
