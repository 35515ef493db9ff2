"""Compaction checkpoints: a summary kept on the last message it folded (issue 26).

Two nullable columns of ``messages`` rather than a table of their own: every read of
messages (a turn's context, ListMessages, exports) carries them without a join, and a
summary belongs to its message, so to every branch of the conversation through it.

Revision ID: 0009
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("summary_text", sa.Text(), nullable=True))
        batch.add_column(sa.Column("summary_meta", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("summary_meta")
        batch.drop_column("summary_text")
