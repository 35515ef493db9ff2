"""Sessions can offer no tool at all: an explicit empty selection (``tools_disabled``),
told apart from an empty ``tool_names``, which means every tool.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        # Existing sessions keep what they had: every tool (or the ones they name).
        batch.add_column(
            sa.Column("tools_disabled", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("tools_disabled")
