"""Reasoning kept with each answer, and usage that says what was paid for: reasoning and
prompt-cache tokens, and the cost in money, per answer and per user, model and day.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _usage_columns() -> list[sa.Column[int]]:
    # Server defaults: rows written before this revision (and writes that name only the
    # older columns) read as nothing of the kind.
    return [
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("cached_input_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("cache_write_tokens", sa.BigInteger(), nullable=False, server_default="0"),
    ]


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("reasoning", sa.JSON(none_as_null=True), nullable=True))
        for column in _usage_columns():
            batch.add_column(column)
        batch.add_column(sa.Column("cost_nanos", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("currency", sa.String(3), nullable=False, server_default=""))
    with op.batch_alter_table("usage_daily") as batch:
        for column in _usage_columns():
            batch.add_column(column)
        batch.add_column(
            sa.Column("cost_nanos", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("currency", sa.String(3), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("usage_daily") as batch:
        for name in ("currency", "cost_nanos", *(c.name for c in _usage_columns())):
            batch.drop_column(name)
    with op.batch_alter_table("messages") as batch:
        for name in ("currency", "cost_nanos", *(c.name for c in _usage_columns()), "reasoning"):
            batch.drop_column(name)
