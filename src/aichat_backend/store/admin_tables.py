"""The operator's tables (AdminService): rate-limit exemptions and the audit log.

Beside the chat tables of ``tables.py``, on the same metadata: only the admin store reads
or writes them, and no chat query ever joins them.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from aichat_backend.store.tables import ID, USER_ID, metadata

# The operator's exemptions from the request-rate limit (AdminService); every replica
# reloads them every few seconds (admin/bypass.py).
rate_limit_bypasses = Table(
    "rate_limit_bypasses",
    metadata,
    Column("id", ID, primary_key=True),
    Column("subject_type", String(16), nullable=False),  # "user" or "api_key"
    Column("subject", USER_ID, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("creator", USER_ID, nullable=False),
    Column("create_time_us", BigInteger, nullable=False),
    UniqueConstraint("subject_type", "subject"),
)

# Every change made through the operator API, with who made it (append-only).
admin_audit_log = Table(
    "admin_audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("actor", USER_ID, nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", Text, nullable=False, default=""),
    Column("detail", JSON, nullable=False),
    Column("request_id", String(128), nullable=False, default=""),
    Column("create_time_us", BigInteger, nullable=False),
    Index("ix_admin_audit_log_created", "create_time_us"),
)
