"""What the engine is asked to do (a turn, a resolution of tool calls) and its settings."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

from aichat_backend import names
from aichat_backend.engine.approvals import Decision
from aichat_backend.engine.sessions import check_request_id, check_text
from aichat_backend.errors import InvalidArgument
from aichat_backend.providers.retry import RetryPolicy
from aichat_backend.reasons import Reason

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


def turn_fingerprint(req: TurnRequest, session_id: str) -> str:
    """What a turn's request asks, as a hash kept with its request_id: a retry must ask
    the same (how the caller reads the answer — streamed or whole, detached — may differ)."""
    return _digest(
        [
            session_id,
            req.text,
            [
                [name, mime, hashlib.sha256(content).hexdigest()]
                for name, mime, content in req.attachments
            ],
            req.model,
            req.temperature,
            req.max_output_tokens,
            req.memory_limit,
        ]
    )


def resolve_fingerprint(req: ResolveRequest, session_id: str) -> str:
    """As ``turn_fingerprint``, for a ResolveToolCalls: its decisions."""
    return _digest(
        [
            session_id,
            [[d.tool_call_id, d.approved, d.edited_arguments, d.reason] for d in req.decisions],
        ]
    )


def _digest(value: object) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def check_turn_request(req: TurnRequest) -> str:
    """Refuse a malformed turn before anything is read; the session's id."""
    session_id = names.parse_session(req.session, "session")
    check_request_id(req.request_id)
    check_text("text", req.text)
    if not req.text.strip() and not req.attachments:
        raise InvalidArgument("text must not be empty", reason=Reason.EMPTY_MESSAGE, field="text")
    if len(req.text) > MAX_TEXT_CHARS:
        raise InvalidArgument(
            f"text must be at most {MAX_TEXT_CHARS} characters",
            reason=Reason.MESSAGE_TOO_LONG,
            field="text",
        )
    return session_id


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
