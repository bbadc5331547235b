"""Events linked to a search found through an index of their search's id.

Forgetting a user looks up what links to the user's searches (clicks and feedback of other
users, to unlink) and the clicks left on the searches its clicks named. Without an index each
lookup read the whole events table, in every round of the erasure, holding writers off for as
long: a round took about a second more at 3 million events, and grew with the table. Only
linked events have an entry.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LINKED = sa.text("search_id IS NOT NULL")  # as app.storage.models writes it


def upgrade() -> None:
    with op.batch_alter_table("event") as batch_op:
        batch_op.create_index(
            "ix_event_search_id",
            ["search_id"],
            unique=False,
            sqlite_where=LINKED,
            postgresql_where=LINKED,
        )


def downgrade() -> None:
    with op.batch_alter_table("event") as batch_op:
        batch_op.drop_index("ix_event_search_id")
