"""Alembic environment: runs on the connection the service hands it (see database.py)."""

from __future__ import annotations

from alembic import context

from aichat_backend.store import admin_tables  # noqa: F401  (its tables join the metadata)
from aichat_backend.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - we never run alembic's own CLI
    raise RuntimeError("run migrations with `aichat-backend migrate`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
