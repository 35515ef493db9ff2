"""Feedback on answers: the owner rates an assistant message up or down, with a comment."""

from __future__ import annotations

from aichat_backend import names
from aichat_backend.domain import Feedback, Message, Rating
from aichat_backend.engine.session_store import SessionStore
from aichat_backend.engine.sessions import check_text
from aichat_backend.errors import InvalidArgument
from aichat_backend.reasons import Reason

MAX_COMMENT_CHARS = 2000


class FeedbackManager:
    def __init__(self, store: SessionStore) -> None:
        self._store = store

    async def set(self, user_id: str, name: str, rating: Rating | None, comment: str) -> Message:
        """Rate (or with ``rating`` None, un-rate) the message; it is returned as stored."""
        parsed = names.parse_message(name, "name")
        check_text("comment", comment)
        if len(comment) > MAX_COMMENT_CHARS:
            raise InvalidArgument(
                f"comment must be at most {MAX_COMMENT_CHARS} characters",
                reason=Reason.COMMENT_TOO_LONG,
                field="comment",
            )
        if rating is None and comment:
            raise InvalidArgument(
                "a comment needs a rating (an unspecified rating clears the feedback)",
                reason=Reason.COMMENT_WITHOUT_RATING,
                field="comment",
            )
        feedback = Feedback(rating, comment) if rating is not None else None
        return await self._store.set_feedback(
            user_id, parsed.session_id, parsed.message_id, feedback
        )
