"""What the engine's ports carry: a chat turn, and a request_id's first result, as stored.

Plain data, below both the engine (which decides what a turn does) and the store (which
decides how it is kept): neither imports the other. ``engine/turn_store.py`` and
``engine/session_store.py`` hold the ports; ``store/turn_store.py`` and
``store/session_store.py`` are their SQL side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aichat_backend.domain import Attachment, Message, Session, ToolCall, ToolCallState
from aichat_backend.errors import Aborted, FailedPrecondition, InvalidArgument
from aichat_backend.money import Cost
from aichat_backend.reasons import Reason

# Idempotency scopes (AIP-155): a request_id names one result per scope.
TURN_SCOPE = "ChatTurn"
RESOLVE_SCOPE = "ResolveToolCalls"
CREATE_SESSION_SCOPE = "CreateSession"
CALL_TOOL_SCOPE = "CallTool"
FORK_SESSION_SCOPE = "ForkSession"
# The text of a waiting call a RegenerateAnswer or an EditMessage superseded: a later
# ResolveToolCalls on it is refused as TOOL_CALL_SUPERSEDED, not merely NOT_PENDING.
DENIED_BY_BRANCH = "Not approved: the user regenerated the answer or edited a message above it."
MAX_REQUEST_ID_LENGTH = 256  # what the idempotency keys' column holds


@dataclass(slots=True)
class SessionSummary:
    """An export's header: how many messages, which models answered, which tools ran."""

    count: int = 0
    tools: set[str] = field(default_factory=set)
    models: set[str] = field(default_factory=set)


@dataclass(slots=True)
class PathPage:
    """A page of a path of a session's tree (ListMessages): its messages in order, the
    path's last message (which the next page keeps), and whether more of it follows."""

    messages: list[Message] = field(default_factory=list)
    leaf_id: str = ""
    more: bool = False


@dataclass(slots=True)
class IdempotencyRecord:
    """The first result of a write a request_id named (AIP-155)."""

    resource: str
    response: bytes | None  # None while the first request still runs
    create_time_us: int
    fingerprint: str = ""  # what the first request asked (empty: not recorded)
    turn_id: str = ""  # the turn the first request started (chat turns)


@dataclass(slots=True)
class TurnClaim:
    """A turn's claim on its session: one turn per session across replicas, as a lease
    that runs out ``lease_seconds`` after it was made or last renewed."""

    turn_id: str
    owner: str  # the replica running the turn
    lease_seconds: float


@dataclass(slots=True, frozen=True)
class Usage:
    """One model call's tokens, counted against its user (the model that answered), and
    what they cost at that model's prices (None: the catalogue names none)."""

    model: str
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int = 0  # of output_tokens
    cached_input_tokens: int = 0  # of input_tokens
    cache_write_tokens: int = 0  # of input_tokens
    cost: Cost | None = None


@dataclass(slots=True, frozen=True)
class HistoryWindow:
    """How many messages of history a turn reads: ``domain.memory_window``'s inputs."""

    requested: int
    default: int
    maximum: int
    # Read this many more: a regenerate or an edit reads the path down to the message it
    # answers again or replaces, which is not history (so the model sees as much history
    # as the turn that first asked).
    extra: int = 0


@dataclass(slots=True)
class TurnContext:
    """A turn's context read: its session and the history the model sees, oldest first."""

    session: Session
    history: list[Message]


@dataclass(slots=True)
class NewTurn:
    """A turn's first write: the claim, the user's message and a placeholder answer."""

    session_id: str
    claim: TurnClaim
    text: str
    attachments: list[Attachment]
    model: str
    title: str  # names the session if it has no title yet
    answer_id: str
    request_id: str = ""  # recorded under TURN_SCOPE, refused if taken meanwhile
    fingerprint: str = ""  # the request's, recorded with its request_id
    # Calls still waiting for approval are denied with this text (a new message answers
    # any open question); None when the history showed none waiting.
    deny_pending: str | None = None
    # A conversation the caller gave whole (the OpenAI-compatible API): stored before the
    # user's message, and the turn's rounds the caller answered (their calls with its
    # results) after it, in order. Their ``seq`` is the store's to assign.
    earlier: list[Message] = field(default_factory=list)
    rounds: list[Message] = field(default_factory=list)
    # Where the turn hangs in the session's tree: the user message follows ``parent_id``
    # ('' for a first message; None: the session's active message as the store finds it,
    # one read more — the engine passes the one its context read saw). With ``question``
    # (RegenerateAnswer) no user message is stored: the answer is a new child of that
    # existing user message.
    parent_id: str | None = None
    question: Message | None = None


@dataclass(slots=True)
class BegunTurn:
    user_message: Message
    answer: Message
    denied: list[ToolCall] = field(default_factory=list)


@dataclass(slots=True)
class StoredTurn:
    """A turn as stored, for replaying a request_id seen before."""

    user_message: Message | None
    answers: list[Message]  # the turn's answers in order, one per round; empty if deleted
    turn_id: str = ""  # the turn the request started (empty for keys older than it)
    fingerprint: str = ""  # what the first request asked (empty: not recorded)


@dataclass(slots=True)
class PendingCall:
    message_id: str
    call: ToolCall
    create_time_us: int


@dataclass(slots=True)
class ResolutionState:
    """What a ResolveToolCalls decides on: the waiting calls and the round that asked."""

    session: Session
    pending: list[PendingCall]
    # The state of each decided-on call that is not waiting (None: no such call).
    others: dict[str, ToolCallState | None]
    round_message: Message | None
    user_message: Message | None
    # Of the decided-on calls that are DENIED: those a regenerate or an edit superseded.
    superseded: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Decided:
    """A user's decision on a waiting call (``call`` as it is to be stored)."""

    message_id: str
    call: ToolCall
    approved: bool


@dataclass(slots=True)
class Resolution:
    """A ResolveToolCalls' write: the session claimed, each decision recorded once."""

    session_id: str
    claim: TurnClaim
    round_message: Message  # marked as being written again
    decided: list[Decided]
    request_id: str = ""  # recorded under RESOLVE_SCOPE, refused if taken meanwhile
    fingerprint: str = ""  # the request's, recorded with its request_id


def turn_in_progress(turn: str = "") -> Aborted:
    """A turn with this request_id runs: ``turn`` ("sessions/{s}/turns/{t}") names it when
    known, and the API layer then gives the duplicate that turn's own stream."""
    return Aborted(
        "a turn with this request_id is still running",
        reason=Reason.TURN_IN_PROGRESS,
        metadata={"turn": turn} if turn else None,
        retry_after=1.0,
    )


def request_id_reused() -> InvalidArgument:
    return InvalidArgument(
        "this request_id was used for a different request; send a new request with a new "
        "request_id (a retry must repeat its request exactly)",
        reason=Reason.REQUEST_ID_REUSED,
        field="request_id",
    )


def already_decided(call_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"tool call {call_id[:80]!r} was already decided",
        reason=Reason.TOOL_CALL_ALREADY_DECIDED,
        metadata={"tool_call_id": call_id[:128]},
    )
