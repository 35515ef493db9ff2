"""What the engine is asked to do (a turn, a resolution of tool calls) and its settings."""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field

from aichat_backend import names
from aichat_backend.domain import Role, ToolCall
from aichat_backend.engine.approvals import Decision
from aichat_backend.engine.compaction import CompactionConfig
from aichat_backend.engine.context_budget import ContextConfig
from aichat_backend.engine.sessions import check_request_id, check_text
from aichat_backend.errors import InvalidArgument
from aichat_backend.providers.base import ModelEntry, ToolSpec
from aichat_backend.providers.catalogue_model_keys import REASONING_EFFORTS
from aichat_backend.providers.provider_kinds import provider_kind
from aichat_backend.providers.retry import RetryPolicy
from aichat_backend.reasons import Reason

MAX_TEXT_CHARS = 1_000_000
MAX_STOP_SEQUENCES = 4
CLIENT_TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(slots=True)
class GivenMessage:
    """One message of a conversation the caller gives whole (the OpenAI-compatible API)."""

    role: Role  # USER, ASSISTANT or SYSTEM
    text: str = ""
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)  # a user's files
    # An assistant's calls of the caller's own functions, each with the result the caller
    # sent (SUCCEEDED).
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass(slots=True)
class Conversation:
    """A conversation the caller gives whole instead of a session's history: what came
    before the turn's user message, and the rounds of this turn the caller has answered
    already (its own functions' results). The model reads these, not a stored history, and
    the turn stores them around its user message, so the session holds what the model saw.
    """

    earlier: list[GivenMessage] = field(default_factory=list)
    rounds: list[GivenMessage] = field(default_factory=list)  # assistant messages with calls


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
    # The OpenAI-compatible API's requests: a conversation given whole (else the session's
    # history is read), the caller's own functions (offered to the model, never run here:
    # a round that calls one ends the turn with those calls RETURNED), stop sequences, the
    # caller's end-user id, and whether tools are offered at all (tool_choice "none").
    conversation: Conversation | None = None
    client_tools: tuple[ToolSpec, ...] = ()
    stop: tuple[str, ...] = ()
    end_user: str = ""
    offer_tools: bool = True

    # This turn's reasoning, over the model's (None: the model's): OpenAI-compatible
    # ``reasoning_effort``, Anthropic's thinking budget (0: off).
    reasoning_effort: str | None = None
    thinking_budget_tokens: int | None = None

    # Where in the session's tree the turn goes (engine/turn_branch.py), as resource names
    # "sessions/{s}/messages/{m}": RegenerateAnswer names a message (an answer, or its
    # question) whose question is answered again; EditMessage the user message it
    # replaces (its files are sent again unless the request has its own or
    # ``drop_attachments``). Neither: after the active message.
    regenerate: str = ""
    edit_of: str = ""
    drop_attachments: bool = False


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
            req.reasoning_effort,
            req.thinking_budget_tokens,
            # Only when set: the fingerprints of plain turns stay what they were.
            *(
                [req.regenerate, req.edit_of, req.drop_attachments]
                if req.regenerate or req.edit_of
                else []
            ),
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
    for target in (req.regenerate, req.edit_of):
        if target:  # the message's session is the turn's (the API derives it from it)
            req.session = names.session(names.parse_message(target, "name").session_id)
    session_id = names.parse_session(req.session, "session")
    check_request_id(req.request_id)
    check_text("text", req.text)
    keeps_files = bool(req.edit_of) and not req.drop_attachments
    if not req.regenerate and not req.text.strip() and not req.attachments and not keeps_files:
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
    _check_openai_extras(req)
    return session_id


def _check_openai_extras(req: TurnRequest) -> None:
    if len(req.stop) > MAX_STOP_SEQUENCES or any(not s or len(s) > 1000 for s in req.stop):
        raise InvalidArgument(
            f"stop: at most {MAX_STOP_SEQUENCES} non-empty sequences of up to 1000 characters",
            reason=Reason.INVALID_FIELD,
            field="stop",
        )
    names_seen: set[str] = set()
    for tool in req.client_tools:
        if not CLIENT_TOOL_NAME_RE.match(tool.name) or tool.name in names_seen:
            raise InvalidArgument(
                f"tool name {tool.name[:80]!r}: names are 1-64 letters, digits, '_' or '-', "
                "each at most once",
                reason=Reason.INVALID_FIELD,
                field="tools",
            )
        names_seen.add(tool.name)
    check_text("user", req.end_user)


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
    # Messages of history read per turn: an upper bound; what is sent is chosen by tokens.
    memory_default: int = 20
    memory_max: int = 500
    context: ContextConfig = field(default_factory=ContextConfig)
    compaction: CompactionConfig = field(default_factory=CompactionConfig)
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
    # The catalogue model that titles a session after its first answer ("" = none).
    title_model: str = ""
    title_timeout_seconds: float = 20.0
    title_max_concurrent: int = 4
