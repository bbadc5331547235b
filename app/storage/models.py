"""The tables: accounts, their API keys and engines, events and their rollups."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, SmallInteger, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.storage.types import EpochMicros

# Autoincrementing 64-bit keys on PostgreSQL; SQLite only autoincrements INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Document = JSON().with_variant(JSONB(), "postgresql")
# The rows of the partial index of searches. ``kind || ''``, not ``kind``: a query naming it so
# matches this index's condition, and cannot walk the (engine, kind, time) index instead, which
# SQLite's planner, knowing no better, would pick for ``kind = 'search'``.
SEARCHES = text("kind || '' = 'search'")
# The rows of the index of search ids: events linked to a search (clicks and feedback).
LINKED = text("search_id IS NOT NULL")


class Account(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    created_at: datetime = Field(sa_column=Column(EpochMicros(), nullable=False))


class ApiKey(SQLModel, table=True):
    """A key is never stored in plain text: a digest to find it, a ciphertext to verify JWTs."""

    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True, ondelete="CASCADE")
    digest: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    ciphertext: str = Field(sa_column=Column(String(512), nullable=False))
    created_at: datetime = Field(sa_column=Column(EpochMicros(), nullable=False))


class Engine(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    hashid: str = Field(sa_column=Column(String(32), nullable=False, unique=True))
    account_id: int = Field(foreign_key="account.id", index=True, ondelete="CASCADE")
    name: str = Field(sa_column=Column(String(255), nullable=False, server_default=""))
    created_at: datetime = Field(sa_column=Column(EpochMicros(), nullable=False))


class Event(SQLModel, table=True):
    """Every recorded event; typed columns for what stats filter and group on, JSON for the rest."""

    __table_args__ = (
        Index("ux_event_engine_event_id", "engine_id", "event_id", unique=True),
        Index("ix_event_engine_kind_time", "engine_id", "kind", "occurred_at"),
        # Clicks and feedback find their search by its queryId among searches alone.
        Index(
            "ix_event_engine_search_query_id",
            "engine_id",
            "query_id",
            sqlite_where=SEARCHES,
            postgresql_where=SEARCHES,
        ),
        # Filtered stats walk one (engine, kind, value) range per bucket, in time order.
        Index("ix_event_engine_query", "engine_id", "kind", "query", "occurred_at"),
        Index("ix_event_engine_document", "engine_id", "kind", "document_id", "occurred_at"),
        Index("ix_event_engine_user", "engine_id", "user_id"),
        # Forgetting a user finds what links to the user's searches, and what is left linked to
        # the searches its clicks named, without reading the whole table in each round.
        Index("ix_event_search_id", "search_id", sqlite_where=LINKED, postgresql_where=LINKED),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    engine_id: int = Field(foreign_key="engine.id", ondelete="CASCADE")
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    occurred_at: datetime = Field(sa_column=Column(EpochMicros(), nullable=False))
    received_at: datetime = Field(sa_column=Column(EpochMicros(), nullable=False))
    event_id: str | None = Field(default=None, sa_column=Column(String(64)))
    door: str = Field(sa_column=Column(String(16), nullable=False))
    session_id: str | None = Field(default=None, sa_column=Column(String(64)))
    user_id: str | None = Field(default=None, sa_column=Column(String(64)))
    device: str = Field(sa_column=Column(String(16), nullable=False))
    is_bot: bool = Field(default=False, nullable=False)
    query: str | None = Field(default=None, sa_column=Column(String(1024)))
    query_id: str | None = Field(default=None, sa_column=Column(String(64)))
    result_count: int | None = Field(default=None, sa_column=Column(Integer))
    search_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    clicked: bool = Field(default=False, nullable=False)
    document_id: str | None = Field(default=None, sa_column=Column(String(255)))
    content_source_id: str | None = Field(default=None, sa_column=Column(String(255)))
    product_type: str | None = Field(default=None, sa_column=Column(String(32)))
    rank: int | None = Field(default=None, sa_column=Column(Integer))
    page: int | None = Field(default=None, sa_column=Column(Integer))
    score: int | None = Field(default=None, sa_column=Column(SmallInteger))
    payload: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(Document, nullable=False, server_default=text("'{}'")),
    )


class Rollup(SQLModel, table=True):
    """Event counts per engine, 15-minute UTC bucket, metric, device and robot flag.

    Every zone's offset is a multiple of 15 minutes, so these buckets fold exactly into local
    hours, days, weeks and months. Kept in the same transaction as the raw events, as are the
    same counts per UTC hour (RollupHour) and UTC day (RollupDay): a question reads the coarsest
    rows that fit its buckets (app/storage/rollups.py).
    """

    # On SQLite the table is its own primary-key index, so a range scan reads the counts directly.
    __table_args__ = {"sqlite_with_rowid": False}

    # Key order (engine, metric, bucket): a question reads one contiguous range per counter.
    engine_id: int = Field(foreign_key="engine.id", primary_key=True, ondelete="CASCADE")
    metric: str = Field(sa_column=Column(String(24), primary_key=True))
    bucket: datetime = Field(sa_column=Column(EpochMicros(), primary_key=True))
    device: str = Field(sa_column=Column(String(16), primary_key=True))
    is_bot: bool = Field(primary_key=True)
    count: int = Field(sa_column=Column(BigInteger, nullable=False))


class RollupHour(SQLModel, table=True):
    """The rollup counts summed per UTC hour (bucket: its first instant, epoch microseconds)."""

    __tablename__ = "rollup_hour"
    __table_args__ = {"sqlite_with_rowid": False}

    engine_id: int = Field(foreign_key="engine.id", primary_key=True, ondelete="CASCADE")
    metric: str = Field(sa_column=Column(String(24), primary_key=True))
    bucket: datetime = Field(sa_column=Column(EpochMicros(), primary_key=True))
    device: str = Field(sa_column=Column(String(16), primary_key=True))
    is_bot: bool = Field(primary_key=True)
    count: int = Field(sa_column=Column(BigInteger, nullable=False))


class RollupDay(SQLModel, table=True):
    """The rollup counts summed per UTC day (bucket: its first instant, epoch microseconds)."""

    __tablename__ = "rollup_day"
    __table_args__ = {"sqlite_with_rowid": False}

    engine_id: int = Field(foreign_key="engine.id", primary_key=True, ondelete="CASCADE")
    metric: str = Field(sa_column=Column(String(24), primary_key=True))
    bucket: datetime = Field(sa_column=Column(EpochMicros(), primary_key=True))
    device: str = Field(sa_column=Column(String(16), primary_key=True))
    is_bot: bool = Field(primary_key=True)
    count: int = Field(sa_column=Column(BigInteger, nullable=False))
