"""Storage per user (issue 24.6): what each message counts against its owner's quota,
and a counter per user that every write and delete keeps, filled from what is stored.
Titles written by a model (issue 26.5): whether the user named a session (then no model
renames it).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(
            sa.Column("title_by_user", sa.Boolean(), nullable=False, server_default="0")
        )
    # Sessions from before have had their first answer: no model titles them anyway.
    op.execute("UPDATE sessions SET title_by_user = true")
    with op.batch_alter_table("messages") as batch:
        batch.add_column(
            sa.Column("stored_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_table(
        "user_storage",
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_user_storage"),
    )
    op.create_index("ix_user_storage_stored_bytes", "user_storage", ["stored_bytes", "user_id"])
    # Messages stored before: their text and attachments as the database measures them
    # (bytes on PostgreSQL; characters of text on SQLite, which is close enough for a
    # quota and is exactly what a later delete subtracts).
    bytes_of = "octet_length" if op.get_bind().dialect.name == "postgresql" else "length"
    op.execute(
        f"""
        UPDATE messages SET stored_bytes = {bytes_of}(text)
          + COALESCE((SELECT SUM(a.size_bytes + COALESCE({bytes_of}(a.text_content), 0))
                      FROM attachments a WHERE a.message_id = messages.id), 0)
        """
    )
    op.execute(
        """
        INSERT INTO user_storage (user_id, stored_bytes)
        SELECT user_id, SUM(stored_bytes) FROM messages GROUP BY user_id
        """
    )


def downgrade() -> None:
    op.drop_index("ix_user_storage_stored_bytes", table_name="user_storage")
    op.drop_table("user_storage")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("stored_bytes")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("title_by_user")
