"""What the engine is asked to do (a turn, a resolution of tool calls) and its settings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aichat_backend.engine.approvals import Decision
from aichat_backend.providers.retry import RetryPolicy

# Idempotency scopes (AIP-155): a request_id names one result per scope.
TURN_SCOPE = "ChatTurn"
RESOLVE_SCOPE = "ResolveToolCalls"
MAX_TEXT_CHARS = 1_000_000


@dataclass(slots=True)
class TurnRequest:
    user_id: str
    session: str  # the session's resource name (names.session)
    text: str
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)
    model: str = ""
    temperature: float | None = None
    max_output_tokens: int = 0
    memory_limit: int = 0
    request_id: str = ""
    deadline: float | None = None  # time.monotonic() by which the caller stops listening
    received: float = field(default_factory=time.monotonic)  # when the request arrived
    # False when the caller wants the answer, not its tokens (SendMessage): the text is
    # handed over once per round instead of token by token.
    relay_text: bool = True
    turn_id: str = ""  # the turn's id when the caller named it (its event log); else new


@dataclass(slots=True)
class ResolveRequest:
    user_id: str
    session: str
    decisions: list[Decision]
    request_id: str = ""
    deadline: float | None = None
    turn_id: str = ""  # as TurnRequest.turn_id


@dataclass(slots=True)
class ChatConfig:
    memory_default: int = 20
    memory_max: int = 100
    default_system_prompt: str = ""
    max_attachment_bytes: int = 10 * 1024 * 1024
    max_attachments: int = 10
    heartbeat_seconds: float = 5.0
    # While the event loop is saturated a stream sends at most one delta this often.
    busy_flush_seconds: float = 0.05
    lease_seconds: float = 60.0
    replica_id: str = "local"
    idempotency_ttl_seconds: float = 24 * 3600
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    tool_timeout_seconds: float = 30.0
    max_tool_rounds: int = 8
    approval_ttl_seconds: float = 24 * 3600
    # A turn's last write is retried this long (at most to the caller's deadline) while
    # the database is away, then in the background this long (see final_write).
    final_write_seconds: float = 10.0
    final_write_background_seconds: float = 300.0
