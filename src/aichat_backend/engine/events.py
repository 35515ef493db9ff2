"""What a chat turn tells its caller, in order. Plain data: the API layer renders it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from aichat_backend.domain import ContextSummary, Message, ToolCall
from aichat_backend.errors import AichatError
from aichat_backend.money import Cost


class TurnOutcome(enum.Enum):
    COMPLETED = "completed"
    AWAITING_APPROVAL = "awaiting_approval"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass(slots=True)
class ContextFill:
    """How much of the model's context window a request fills (a page's gauge)."""

    tokens: int
    window_tokens: int
    output_reserve_tokens: int
    messages: int = 0
    omitted_messages: int = 0
    summarized: bool = False


@dataclass(slots=True)
class TurnStarted:
    user_message: Message
    answer_name: str
    model: str
    # A resolution's turn goes on in an answer an earlier turn began (ResolveToolCalls).
    continues_answer: bool = False
    context: ContextFill | None = None  # as first chosen, before any compaction


@dataclass(slots=True)
class ContextCompacted:
    """Older messages were folded into a summary stored on ``through_name``."""

    through_name: str
    folded_messages: int
    tokens_before: int
    tokens_after: int
    window_tokens: int
    summary: ContextSummary
    after_refusal: bool = False


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ReasoningDelta:
    """More of the model's reasoning, before (or between) the answer's text."""

    text: str


@dataclass(slots=True)
class ToolCallUpdate:
    call: ToolCall


@dataclass(slots=True)
class ApprovalRequired:
    calls: list[ToolCall]


@dataclass(slots=True)
class Heartbeat:
    elapsed_seconds: float


@dataclass(slots=True)
class TurnEnded:
    outcome: TurnOutcome
    message: Message
    input_tokens: int = 0
    output_tokens: int = 0
    error: AichatError | None = None
    user_message: Message | None = None
    pending: list[ToolCall] = field(default_factory=list)
    # The catalogue name of the model that answered the last round (a fallback, maybe).
    model: str = ""
    # The names of the turn's answer messages, one per round: the first is
    # TurnStarted.answer_name, the last is ``message``.
    answers: list[str] = field(default_factory=list)
    # Parts of the token totals above, and what the turn's calls cost (None: unpriced).
    reasoning_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cost: Cost | None = None
    context: ContextFill | None = None  # the last model call's, by the provider's count
    # The title model is titling the session now (its first turn ended; ``titles``).
    title_pending: bool = False


TurnEvent = (
    TurnStarted
    | TextDelta
    | ReasoningDelta
    | ToolCallUpdate
    | ApprovalRequired
    | Heartbeat
    | ContextCompacted
    | TurnEnded
)
