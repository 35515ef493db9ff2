"""The port through which sessions, their messages, feedback and CallTool's request ids
are stored: what session management asks, never how (``store/session_store.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from aichat_backend.domain import Feedback, Message, Session
from aichat_backend.records import IdempotencyRecord, PathPage, SessionSummary


class SessionStore(Protocol):
    async def create_session(self, user_id: str, draft: Session, request_id: str) -> Session:
        """Create ``draft``; with a request_id seen before (CreateSession), the session that
        request made instead. SESSION_ALREADY_EXISTS when the id is taken."""
        ...

    async def get_session(self, user_id: str, session_id: str) -> Session: ...

    async def list_sessions(
        self, user_id: str, limit: int, after: tuple[int, str] | None
    ) -> list[Session]:
        """Newest first by (update time, id), after the keyset ``after``."""
        ...

    async def update_session(
        self,
        user_id: str,
        session_id: str,
        changes: dict[str, Any],
        check: Callable[[Session], None] | None = None,
    ) -> Session:
        """Apply ``changes``; ``check`` first sees the session as it is, locked, and may
        refuse (raise) the change."""
        ...

    async def delete_session(self, user_id: str, session_id: str) -> None: ...

    async def list_messages(
        self, user_id: str, session_id: str, limit: int, after_seq: int | None
    ) -> list[Message]:
        """Messages in order after ``after_seq`` (SESSION_NOT_FOUND if not the user's)."""
        ...

    async def list_path(
        self,
        user_id: str,
        session_id: str,
        leaf: str | None,
        after_seq: int | None,
        limit: int,
        max_chars: int,
    ) -> PathPage:
        """Up to ``limit`` messages (with sibling positions, no attachment content) of the
        path from the root to ``leaf`` (None: the session's active message), after
        ``after_seq``, no more than ``max_chars`` of them by ``message_sizes``' estimate
        (one at least). SESSION_NOT_FOUND if not the user's. The SQL store reads a page
        in one statement."""
        ...

    async def branch_leaf(self, user_id: str, session_id: str, message_id: str) -> str:
        """The last message of the newest branch through ``message_id`` (the message
        written last below it, or itself): MESSAGE_NOT_FOUND if not in the session."""
        ...

    async def switch_branch(
        self, user_id: str, session_id: str, message_id: str, exact: bool
    ) -> Session:
        """Make the session's active message ``message_id`` (``exact``) or its
        ``branch_leaf``; the session as it is then."""
        ...

    async def fork_session(
        self,
        user_id: str,
        session_id: str,
        message_id: str,
        new_id: str,
        display_name: str,
        request_id: str,
    ) -> Session:
        """A new session ``new_id`` with the original's settings and a copy of the path to
        ``message_id`` (messages, files, tool calls, feedback; calls still waiting are
        copied denied); with a request_id seen before, the session that request made."""
        ...

    async def message_sizes(
        self, user_id: str, session_id: str, limit: int, after_seq: int | None
    ) -> list[int]:
        """Sizes of the messages ``list_messages`` would return, in characters (text, tool
        results and arguments, plus a fixed overhead per message, call and attachment: see
        ``engine.page_bytes``), without reading them (SESSION_NOT_FOUND if not the user's)."""
        ...

    async def summarize_session(self, user_id: str, session_id: str) -> SessionSummary:
        """How many messages the session has, which models answered, which tools ran."""
        ...

    async def clear_messages(self, user_id: str, session_id: str) -> None:
        """Delete every message, and the event logs of the session's ended turns (cleared
        text must not come back through a resumed turn)."""
        ...

    async def set_feedback(
        self, user_id: str, session_id: str, message_id: str, feedback: Feedback | None
    ) -> Message:
        """Rate (None: un-rate) an assistant message; the message as stored."""
        ...

    # --- request ids of writes that are not turns (CallTool) ----------------------------

    async def reserve_request(
        self,
        user_id: str,
        scope: str,
        request_id: str,
        resource: str,
        abandoned: Callable[[IdempotencyRecord], bool],
    ) -> IdempotencyRecord | None:
        """Reserve the request_id before the write runs: None when reserved now, else the
        first request's record (an ``abandoned`` one is taken over: None)."""
        ...

    async def settle_request(
        self, user_id: str, scope: str, request_id: str, response: bytes | None
    ) -> None:
        """The reserved write's result; None forgets the reservation (it never ran to an
        answer, so a retry may run it)."""
        ...
