"""A conversation is a tree: each message names its parent, each session its active path.

Every existing message's parent becomes the message stored just before it in its session
(the line it was), and every session's active message its last one: nothing is lost and
every session reads as it did.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Correlated subqueries on the (user_id, session_id, seq) unique index: one statement per
# table on SQLite and PostgreSQL alike, whatever the number of sessions.
_PARENTS = """
UPDATE messages SET parent_id = COALESCE((
  SELECT p.id FROM messages AS p
  WHERE p.user_id = messages.user_id AND p.session_id = messages.session_id
    AND p.seq < messages.seq
  ORDER BY p.seq DESC LIMIT 1), '')
"""
_ACTIVE = """
UPDATE sessions SET active_message_id = (
  SELECT m.id FROM messages AS m
  WHERE m.user_id = sessions.user_id AND m.session_id = sessions.id
  ORDER BY m.seq DESC LIMIT 1)
"""


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(64), nullable=False, server_default=""))
        batch.create_index(
            "ix_messages_user_id_session_id_parent_id_seq",
            ["user_id", "session_id", "parent_id", "seq"],
        )
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("active_message_id", sa.String(64), nullable=True))
    op.execute(_PARENTS)
    op.execute(_ACTIVE)


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("active_message_id")
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_user_id_session_id_parent_id_seq")
        batch.drop_column("parent_id")
