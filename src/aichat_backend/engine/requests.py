"""What the engine is asked to do (a turn, a resolution of tool calls) and its settings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aichat_backend import names
from aichat_backend.engine.approvals import Decision
from aichat_backend.engine.sessions import check_request_id, check_text
from aichat_backend.errors import InvalidArgument
from aichat_backend.providers.base import ModelEntry
from aichat_backend.providers.catalogue_model_keys import REASONING_EFFORTS
from aichat_backend.providers.provider_kinds import provider_kind
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
    # This turn's reasoning, over the model's (None: the model's): OpenAI-compatible
    # ``reasoning_effort``, Anthropic's thinking budget (0: off).
    reasoning_effort: str | None = None
    thinking_budget_tokens: int | None = None


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
    if req.reasoning_effort is not None and req.reasoning_effort not in REASONING_EFFORTS:
        raise InvalidArgument(
            f"reasoning_effort must be one of: {', '.join(REASONING_EFFORTS)}",
            reason=Reason.INVALID_REASONING_OPTION,
            field="options.reasoning_effort",
            metadata={"valid_values": ",".join(REASONING_EFFORTS)},
        )
    if req.thinking_budget_tokens is not None and req.thinking_budget_tokens < 0:
        raise InvalidArgument(
            "thinking_budget_tokens must not be negative (0 turns thinking off)",
            reason=Reason.INVALID_REASONING_OPTION,
            field="options.thinking_budget_tokens",
        )
    return session_id


def check_reasoning_options(req: TurnRequest, model: ModelEntry) -> None:
    """Refuse a reasoning option the turn's model would not read (not silently ignore it):
    ``reasoning_effort`` is the OpenAI-compatible servers', a thinking budget Anthropic's."""
    anthropic = provider_kind(model.provider).family == "anthropic"
    if req.reasoning_effort and anthropic:
        raise InvalidArgument(
            f"model {model.name!r} is Anthropic's: it takes thinking_budget_tokens, "
            "not reasoning_effort",
            reason=Reason.INVALID_REASONING_OPTION,
            field="options.reasoning_effort",
        )
    if req.thinking_budget_tokens and not anthropic:
        raise InvalidArgument(
            f"model {model.name!r} is OpenAI-compatible: it takes reasoning_effort, "
            "not thinking_budget_tokens",
            reason=Reason.INVALID_REASONING_OPTION,
            field="options.thinking_budget_tokens",
        )


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
