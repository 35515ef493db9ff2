"""The port through which a chat turn is stored: what the engine asks, never how.

Every write and read of a turn goes through one ``TurnStore``, in domain types
(``aichat_backend.records``). The engine decides what a turn does and when; the
implementation decides how it is kept — transactions, statements, PostgreSQL's
one-statement writes — and is free to change that without the engine noticing.
``store/turn_store.py`` is the SQL side; ``aichat_devtools.memory_turn_store`` keeps it
in memory for the engine's tests; ``tests/contract`` holds the three to the same rules.

The methods follow a turn's life: replay or context → begin → rounds (tool round, call
updates, next round) → an end (finish, approval, or cut off); a resolution re-opens a
turn that waits for approval; leases keep a running turn's claim and free a crashed one's.
"""

from __future__ import annotations

from typing import Protocol

from aichat_backend.domain import ContextSummary, Message, ToolCall
from aichat_backend.records import (
    BegunTurn,
    HistoryWindow,
    NewTurn,
    Resolution,
    ResolutionState,
    StoredTurn,
    TurnContext,
    Usage,
)


class TurnStore(Protocol):
    # --- reading ---------------------------------------------------------------------

    async def find_replay(self, user_id: str, scope: str, request_id: str) -> StoredTurn | None:
        """The turn a request_id named before (within its TTL), with the request's
        fingerprint and the turn's id, or None if it is new."""
        ...

    async def load_context(
        self, user_id: str, session_id: str, window: HistoryWindow, leaf: str | None = None
    ) -> TurnContext:
        """The session and the newest messages of the path from the root to ``leaf`` (the
        session's active message when None), never of another branch, ``leaf`` last
        (SESSION_NOT_FOUND if not the user's; MESSAGE_NOT_FOUND if ``leaf`` is not the
        session's)."""
        ...

    async def question_of(self, user_id: str, session_id: str, message_id: str) -> str:
        """The user message at or above ``message_id`` on its path (MESSAGE_NOT_FOUND;
        NOTHING_TO_REGENERATE when there is none)."""
        ...

    # --- a turn's writes ---------------------------------------------------------------

    async def store_summary(
        self, user_id: str, session_id: str, message_id: str, summary: ContextSummary
    ) -> ContextSummary:
        """Keep ``summary`` on the message (a compaction checkpoint) and return it; a
        message that carries one already keeps it, and that one is returned (idempotent).
        MESSAGE_NOT_FOUND-style NOT_FOUND when the message is not the user's."""
        ...

    async def begin_turn(self, user_id: str, turn: NewTurn) -> BegunTurn:
        """Claim the session, store the user's message (below ``parent_id``; none with
        ``question``) and a placeholder answer below it, which becomes the session's active
        message; record
        the request_id (with the fingerprint and the turn) and deny waiting calls, all or
        nothing. SESSION_BUSY when another
        turn holds the session, TURN_IN_PROGRESS when the request_id was taken meanwhile.
        The only write before the first token: keep it to one statement where possible."""
        ...

    async def store_tool_round(
        self,
        user_id: str,
        session_id: str,
        answer: Message,
        calls: list[ToolCall],
        usage: Usage | None,
    ) -> None:
        """A round that asked for tools: its answer (still being written), its calls,
        the usage of its model call."""
        ...

    async def update_call(self, user_id: str, message_id: str, call: ToolCall) -> None:
        """A call's state and result as it runs and ends."""
        ...

    async def next_round(
        self, user_id: str, session_id: str, done: Message, model: str, history: int = 0
    ) -> tuple[Message, list[Message]]:
        """Complete the round ``done`` and add the next round's placeholder answer below it
        (the active message moves to it only from ``done``: a user who switched branch
        meanwhile stays there); with ``history`` > 0 also read that many newest messages of
        the path to ``done`` (a resumed turn's context)."""
        ...

    async def end_for_approval(
        self, user_id: str, session_id: str, turn_id: str, answer: Message
    ) -> None:
        """The turn waits for the user: its round complete, the session released."""
        ...

    async def finish(
        self, user_id: str, session_id: str, turn_id: str, answer: Message, usage: Usage | None
    ) -> None:
        """The turn's last write: the answer, the session released, the usage. Idempotent:
        it moves only an answer still being written (or marked INTERRUPTED meanwhile), so
        sending it again after an unknown outcome stores it and counts its usage once."""
        ...

    async def cut_off(
        self,
        user_id: str,
        session_id: str,
        turn_id: str,
        answer: Message,
        why: str,
        *,
        write_answer: bool,
    ) -> None:
        """A turn stopped before its end: its answer as it was (unless its last write was
        already made: ``write_answer`` False), its unfinished calls failed with ``why``,
        the session released."""
        ...

    # --- approvals -----------------------------------------------------------------------

    async def expire_pending(
        self, user_id: str, session_id: str, older_than_us: int, why: str
    ) -> int:
        """Deny calls waiting since before ``older_than_us``; how many were denied."""
        ...

    async def load_resolution(
        self, user_id: str, session_id: str, call_ids: list[str]
    ) -> ResolutionState:
        """The session's waiting calls, the state of the other ``call_ids``, the round
        that asked and its user message (SESSION_NOT_FOUND if not the user's)."""
        ...

    async def open_resolution(self, user_id: str, resolution: Resolution) -> None:
        """Claim the session, mark the round as being written again, record every
        decision once and the request_id, all or nothing (SESSION_BUSY,
        TOOL_CALL_ALREADY_DECIDED, TURN_IN_PROGRESS)."""
        ...

    # --- leases ----------------------------------------------------------------------------

    async def renew_lease(
        self, user_id: str, session_id: str, turn_id: str, lease_seconds: float
    ) -> None: ...

    async def record_usage(self, user_id: str, usage: Usage) -> None:
        """A model call outside any turn (a session's title): its usage, in the day's row."""
        ...

    async def write_title(self, user_id: str, session_id: str, title: str) -> bool:
        """Title the session with a model's title unless its user named it (CreateSession
        or UpdateSession display_name), in one conditional write: a rename racing it is
        never overwritten. False when nothing was written (named, or gone)."""
        ...

    async def sweep_interrupted(self) -> int:
        """Mark answers a crash left unfinished INTERRUPTED and free their sessions: those
        whose turn's lease ran out, or that a later user message superseded. Leases alone
        decide (never the replica id): a live turn elsewhere is never touched."""
        ...
