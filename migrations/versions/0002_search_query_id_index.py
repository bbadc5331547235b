"""Searches found by their queryId through a partial index of searches alone.

Linking a click to its search looked the queryId up in an index of every event's queryId, so
the lookup walked every click already linked to that search (and with a client sending one
queryId for all its clicks, every click), a cost growing with the table. The new index holds
searches only; clicks and feedback no longer pay for an index entry.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCHES = sa.text("kind || '' = 'search'")  # as app.storage.models writes it


def upgrade() -> None:
    with op.batch_alter_table("event") as batch_op:
        batch_op.drop_index("ix_event_engine_query_id")
        batch_op.create_index(
            "ix_event_engine_search_query_id",
            ["engine_id", "query_id"],
            unique=False,
            sqlite_where=SEARCHES,
            postgresql_where=SEARCHES,
        )


def downgrade() -> None:
    with op.batch_alter_table("event") as batch_op:
        batch_op.drop_index("ix_event_engine_search_query_id")
        batch_op.create_index("ix_event_engine_query_id", ["engine_id", "query_id"], unique=False)
