"""Turn event logs (resume a turn by sequence number) and feedback on answers.

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "turn_logs",
        sa.Column("turn_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("replica_id", sa.String(128), nullable=False),
        sa.Column("answer_id", sa.String(64), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=False),
        sa.Column("ended", sa.Boolean(), nullable=False),
        sa.Column("create_time_us", sa.BigInteger(), nullable=False),
        sa.Column("update_time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("turn_id", name="pk_turn_logs"),
        sa.ForeignKeyConstraint(
            ["user_id", "session_id"],
            ["sessions.user_id", "sessions.id"],
            name="fk_turn_logs_sessions",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_turn_logs_ended_update_time_us", "turn_logs", ["ended", "update_time_us"])
    op.create_index("ix_turn_logs_user_id_session_id", "turn_logs", ["user_id", "session_id"])
    op.create_table(
        "turn_event_batches",
        sa.Column("turn_id", sa.String(64), nullable=False),
        sa.Column("first_seq", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("turn_id", "first_seq", name="pk_turn_event_batches"),
        sa.ForeignKeyConstraint(
            ["turn_id"],
            ["turn_logs.turn_id"],
            name="fk_turn_event_batches_turn_logs",
            ondelete="CASCADE",
        ),
    )
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("feedback_rating", sa.String(16), nullable=True))
        batch.add_column(sa.Column("feedback_comment", sa.Text(), nullable=True))
        batch.add_column(sa.Column("feedback_time_us", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("feedback_time_us")
        batch.drop_column("feedback_comment")
        batch.drop_column("feedback_rating")
    op.drop_table("turn_event_batches")
    op.drop_table("turn_logs")
