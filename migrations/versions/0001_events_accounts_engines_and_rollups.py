"""Accounts, API keys, engines, events and their rollups.

Instants are BIGINT microseconds since the Unix epoch (UTC) on every backend.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("ciphertext", sa.String(length=512), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"),
    )
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_key_account_id"), ["account_id"], unique=False)

    op.create_table(
        "engine",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hashid", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), server_default="", nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("hashid"),
    )
    with op.batch_alter_table("engine", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_engine_account_id"), ["account_id"], unique=False)

    op.create_table(
        "event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("engine_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("door", sa.String(length=16), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("device", sa.String(length=16), nullable=False),
        sa.Column("is_bot", sa.Boolean(), nullable=False),
        sa.Column("query", sa.String(length=1024), nullable=True),
        sa.Column("query_id", sa.String(length=64), nullable=True),
        sa.Column("result_count", sa.Integer(), nullable=True),
        sa.Column("search_id", sa.BigInteger(), nullable=True),
        sa.Column("clicked", sa.Boolean(), nullable=False),
        sa.Column("document_id", sa.String(length=255), nullable=True),
        sa.Column("content_source_id", sa.String(length=255), nullable=True),
        sa.Column("product_type", sa.String(length=32), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("score", sa.SmallInteger(), nullable=True),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["engine_id"], ["engine.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_event_engine_document",
            ["engine_id", "kind", "document_id", "occurred_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_event_engine_kind_time", ["engine_id", "kind", "occurred_at"], unique=False
        )
        batch_op.create_index(
            "ix_event_engine_query", ["engine_id", "kind", "query", "occurred_at"], unique=False
        )
        batch_op.create_index("ix_event_engine_query_id", ["engine_id", "query_id"], unique=False)
        batch_op.create_index("ix_event_engine_user", ["engine_id", "user_id"], unique=False)
        batch_op.create_index("ux_event_engine_event_id", ["engine_id", "event_id"], unique=True)

    op.create_table(
        "rollup",
        sa.Column("engine_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=24), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("device", sa.String(length=16), nullable=False),
        sa.Column("is_bot", sa.Boolean(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["engine_id"], ["engine.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("engine_id", "metric", "bucket", "device", "is_bot"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("rollup")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index("ux_event_engine_event_id")
        batch_op.drop_index("ix_event_engine_user")
        batch_op.drop_index("ix_event_engine_query_id")
        batch_op.drop_index("ix_event_engine_query")
        batch_op.drop_index("ix_event_engine_kind_time")
        batch_op.drop_index("ix_event_engine_document")

    op.drop_table("event")
    with op.batch_alter_table("engine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_engine_account_id"))

    op.drop_table("engine")
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_key_account_id"))

    op.drop_table("api_key")
    op.drop_table("account")
