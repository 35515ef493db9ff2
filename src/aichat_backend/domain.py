"""Domain objects shared by the store, the engine and the API layer.

Plain dataclasses: the proto is the wire contract and the SQL tables are storage; these
are what the code in between talks about. Times are UTC microseconds since the epoch.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aichat_backend import names
from aichat_backend.errors import NotFound
from aichat_backend.money import Cost
from aichat_backend.providers.base import ReasoningBlock
from aichat_backend.reasons import Reason

T = TypeVar("T")


def now_us() -> int:
    return time.time_ns() // 1000


class Role(enum.Enum):
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"
    SYSTEM = "system"


class MessageState(enum.Enum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"  # cut short by cancel, failure or shutdown
    INTERRUPTED = "interrupted"  # left unfinished by a crash
    STREAMING = "streaming"  # being written right now (never shown as such)


class ToolCallState(enum.Enum):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    DENIED = "denied"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETURNED = "returned"  # the caller's own function: handed back to it, never run here


@dataclass(slots=True)
class Session:
    user_id: str
    id: str
    display_name: str = ""
    model: str = ""
    system_prompt: str = ""
    tool_names: list[str] = field(default_factory=list)
    memory_limit: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    message_count: int = 0
    tools_locked: bool = False
    create_time_us: int = 0
    update_time_us: int = 0
    tools_disabled: bool = False  # an explicit empty selection: no tool at all
    active_turn_id: str = ""  # the turn answering now (its claim's lease still valid)
    # The last message of the active path: the conversation shown, and where the next
    # StreamChat continues ("" while the session has no message).
    active_message_id: str = ""

    @property
    def name(self) -> str:
        return names.session(self.id)


@dataclass(slots=True)
class Attachment:
    filename: str
    mime_type: str
    size_bytes: int
    sha256: str
    content: bytes | None = None  # None when loaded without content
    text_content: str | None = None  # what the model reads; None for images


@dataclass(slots=True)
class ToolCall:
    id: str
    tool_name: str
    arguments: dict[str, Any]
    state: ToolCallState
    server: str = ""
    result_text: str = ""
    is_error: bool = False
    duration_ms: int = 0
    approval_reason: str = ""


class Rating(enum.Enum):
    UP = "up"
    DOWN = "down"


@dataclass(slots=True)
class Feedback:
    """The owner's rating of an answer (SetMessageFeedback)."""

    rating: Rating
    comment: str = ""
    update_time_us: int = 0


@dataclass(slots=True)
class ContextSummary:
    """A compaction checkpoint: text that stands in for a message and every one before it
    on its branch when the model's context is made (the messages stay stored)."""

    text: str
    folded_messages: int  # from the conversation's start through the message it is on
    folded_tokens: int  # estimated tokens of what it replaced
    summary_tokens: int  # estimated tokens of the text
    model: str  # the catalogue name that wrote it
    create_time_us: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "folded_messages": self.folded_messages,
            "folded_tokens": self.folded_tokens,
            "summary_tokens": self.summary_tokens,
            "model": self.model,
            "create_time_us": self.create_time_us,
        }

    @classmethod
    def from_columns(cls, text: str, meta: dict[str, Any]) -> ContextSummary:
        return cls(
            text=text,
            folded_messages=int(meta.get("folded_messages", 0)),
            folded_tokens=int(meta.get("folded_tokens", 0)),
            summary_tokens=int(meta.get("summary_tokens", 0)),
            model=str(meta.get("model", "")),
            create_time_us=int(meta.get("create_time_us", 0)),
        )


@dataclass(slots=True)
class Message:
    session_id: str
    id: str
    seq: int
    role: Role
    text: str = ""
    state: MessageState = MessageState.COMPLETE
    model: str = ""
    finish_reason: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    create_time_us: int = 0
    attachments: list[Attachment] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    feedback: Feedback | None = None
    # An answer's reasoning before its text, block by block as the provider sent it (an
    # Anthropic tool-use round sends its signed blocks back), and its usage beyond the
    # totals: parts of ``output_tokens`` / ``input_tokens``, and the cost when priced.
    reasoning: list[ReasoningBlock] = field(default_factory=list)
    reasoning_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cost: Cost | None = None
    # The message this one follows ("" for a first message); and, when read for a listing,
    # its place among the messages with the same parent (oldest first) and its neighbours'
    # ids there ("" when it has none on that side).
    parent_id: str = ""
    sibling_index: int = 0
    sibling_count: int = 1
    previous_sibling: str = ""
    next_sibling: str = ""
    # Set on the last message a compaction folded (engine/compaction.py).
    context_summary: ContextSummary | None = None

    @property
    def name(self) -> str:
        return names.message(self.session_id, self.id)

    @property
    def reasoning_text(self) -> str:
        """The reasoning as shown: every block's text in order (redacted ones have none)."""
        return "".join(b.text for b in self.reasoning)


@dataclass(slots=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str = ""


# Fields of a session a caller may change (UpdateSession's update_mask paths).
UPDATABLE_SESSION_FIELDS = (
    "display_name",
    "model",
    "system_prompt",
    "tool_names",
    "tools_disabled",
    "memory_limit",
    "labels",
)


def memory_window(requested: int, session_limit: int, default: int, maximum: int) -> int:
    """Messages of context: the turn's request, else the session's, else the default.

    PostgreSQL applies the same rule inside the turn's context read
    (``context_queries.CONTEXT``); a test holds the two to the same answers.
    """
    for value in (requested, session_limit):
        if value > 0:
            return min(value, maximum)
    return min(default, maximum)


def message_not_found(session_id: str, message_id: str) -> NotFound:
    # The same words whether the message is missing or someone else's.
    return NotFound(
        f"message {names.message(session_id, message_id)} was not found",
        reason=Reason.MESSAGE_NOT_FOUND,
    )


def session_not_found(session_id: str) -> NotFound:
    # The same words whether the session is missing or someone else's.
    return NotFound(
        f"session {names.session(session_id)} was not found",
        reason=Reason.SESSION_NOT_FOUND,
        metadata={"resource": names.session(session_id)},
    )
