"""Hourly and daily rollups beside the 15-minute ones, filled from them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, grain in microseconds)
COARSE = (("rollup_hour", 3_600_000_000), ("rollup_day", 86_400_000_000))


def upgrade() -> None:
    for table, grain in COARSE:
        op.create_table(
            table,
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
        op.execute(
            f"INSERT INTO {table} (engine_id, metric, bucket, device, is_bot, count) "
            f"SELECT engine_id, metric, bucket - bucket % {grain}, device, is_bot, sum(count) "
            "FROM rollup GROUP BY 1, 2, 3, 4, 5"
        )


def downgrade() -> None:
    for table, _grain in reversed(COARSE):
        op.drop_table(table)
