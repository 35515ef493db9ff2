"""Crash recovery and request ids (issue 23): a turn log's sequence limit and cut point,
and a request_id's fingerprint and turn.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("turn_logs") as batch:
        batch.add_column(sa.Column("seq_limit", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("cut_from", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("turn_id", sa.String(64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("turn_id")
        batch.drop_column("fingerprint")
    with op.batch_alter_table("turn_logs") as batch:
        batch.drop_column("cut_from")
        batch.drop_column("seq_limit")
