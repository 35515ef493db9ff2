"""Settings of the server process and its database.

Fields only: ``config.Settings`` combines them and reads them. Each ``description`` is what
docs/configuration.md says about the variable (``make gen`` writes it from here).
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings

MIB = 1024 * 1024


def default_replica_id() -> str:
    """host-pid-random: the host name alone is shared by processes on one host."""
    return f"{socket.gethostname()[:100]}-{os.getpid()}-{secrets.token_hex(3)}"


class ServerFields(BaseSettings):
    # --- server ---------------------------------------------------------------------
    grpc_address: str = Field(
        "127.0.0.1:50051",
        description=(
            "Where the gRPC server listens. Keep it private: whoever reaches it names the user."
        ),
    )
    openai_address: str = Field(
        "127.0.0.1:50052",
        description=(
            "Where the OpenAI-compatible API's HTTP listener listens (Envoy routes "
            "/v1/chat/completions and /v1/models to it); private like the gRPC port, which it "
            "trusts as much. Empty: off."
        ),
    )
    auth_header: str = Field(
        "x-user-id",
        description=(
            "Metadata naming the caller, set by Envoy from the verified token (seeds: X-User-ID, "
            "X-EMAIL-USER)."
        ),
    )
    max_user_id_length: int = Field(
        256, ge=1, le=256, description="Longest user id accepted (the user_id columns hold 256)."
    )
    max_message_bytes: int = Field(
        16 * MIB, ge=1024, description="Largest gRPC message either way (room for attachments)."
    )
    list_page_max_bytes: int = Field(
        4 * MIB,
        ge=1024,
        description="A ListMessages page stops early past this many bytes.",
    )
    max_concurrent_exports_per_user: int = Field(
        2,
        ge=0,
        description=(
            "Exports one user may run at once in this process (0: no cap); past it "
            "RESOURCE_EXHAUSTED, EXPORTS_LIMITED."
        ),
    )
    shutdown_grace_seconds: float = Field(
        10.0,
        ge=0,
        description=(
            "On SIGTERM: health goes NOT_SERVING, running turns get this long, then end CANCELLED "
            "with their partial answer stored. Give orchestrators this plus a margin."
        ),
    )
    keepalive_min_ping_interval_seconds: float = Field(
        10.0, gt=0, description="Clients may ping this often on idle streams without being cut off."
    )
    keepalive_time_seconds: float = Field(
        30.0, gt=0, description="Our own pings on silent connections find dead peers."
    )
    keepalive_timeout_seconds: float = Field(
        10.0, gt=0, description="A ping unanswered this long closes the connection."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug, info, warning or error."
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="json (one object per line) or text (for people)."
    )
    metrics_address: str | None = Field(
        None,
        description=(
            "host:port for Prometheus /metrics; unset = off. Keep it private like the gRPC port."
        ),
    )
    data_dir: Path = Field(Path("./var"), description="Where the embedded SQLite database lives.")
    replica_id: str = Field(
        default_factory=default_replica_id,
        min_length=1,
        max_length=128,
        description=(
            "Names this process in its turns' claims and logs, for operators (default: "
            "host-pid-random, unique per process even on one host). Recovery never goes by "
            "it: a turn is recovered only once its lease ran out."
        ),
    )
    config_file: Path | None = Field(
        None, description="Optional YAML with the same keys in lower case (llm_model: …)."
    )

    # --- database ---------------------------------------------------------------------
    database_url: str | None = Field(
        None,
        description=(
            "postgresql://…?sslmode=…, postgresql+asyncpg://… or sqlite:///… (default: SQLite in "
            "AICHAT_DATA_DIR; SQLite runs inline on the event loop, for one process; "
            "sqlite+aiosqlite:///… is read as the same)."
        ),
    )
    db_host: str | None = Field(
        None,
        description=(
            "The seeds' alternative to a URL: PostgreSQL host (with AICHAT_DB_PORT, _NAME, "
            "_USERNAME, _PASSWORD, _SSL_MODE)."
        ),
    )
    db_port: int = Field(5432, ge=1, le=65535, description="PostgreSQL port (with AICHAT_DB_HOST).")
    db_name: str | None = Field(
        None, description="PostgreSQL database (with AICHAT_DB_HOST; default ai_chat)."
    )
    db_username: str | None = Field(None, description="PostgreSQL user (with AICHAT_DB_HOST).")
    db_password: str | None = Field(None, description="PostgreSQL password (with AICHAT_DB_HOST).")
    db_ssl_mode: str | None = Field(None, description="PostgreSQL sslmode (with AICHAT_DB_HOST).")
    db_pool_size: int = Field(
        10, ge=1, description="PostgreSQL connections per process (plus as many overflow)."
    )
    db_connect_timeout_seconds: float = Field(
        2.0,
        gt=0,
        description="Bound on connecting to the database (then UNAVAILABLE, DATABASE_UNAVAILABLE).",
    )
    db_statement_timeout_seconds: float = Field(3.0, gt=0, description="Bound on one statement.")
    db_request_timeout_seconds: float = Field(
        4.5, gt=0, description="Bound on a request's database work in all."
    )
    idempotency_ttl_hours: float = Field(
        24.0, ge=24.0, description="How long request_ids are remembered (at least 24)."
    )
