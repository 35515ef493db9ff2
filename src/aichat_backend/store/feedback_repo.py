"""The owner's feedback on answers: columns of the message it rates."""

from __future__ import annotations

from sqlalchemy import and_, select, update

from aichat_backend import names
from aichat_backend.domain import Feedback, MessageState, Role, now_us
from aichat_backend.errors import FailedPrecondition, NotFound
from aichat_backend.reasons import Reason
from aichat_backend.store.database import Tx
from aichat_backend.store.tables import messages


async def set_feedback(
    tx: Tx, user_id: str, session_id: str, message_id: str, feedback: Feedback | None
) -> None:
    """Set (or, with None, clear) the feedback of the user's assistant message."""
    this = and_(
        messages.c.user_id == user_id,
        messages.c.session_id == session_id,
        messages.c.id == message_id,
    )
    values = (
        {"feedback_rating": None, "feedback_comment": None, "feedback_time_us": None}
        if feedback is None
        else {
            "feedback_rating": feedback.rating.value,
            "feedback_comment": feedback.comment,
            "feedback_time_us": now_us(),
        }
    )
    done = await tx.execute(
        update(messages)
        .where(
            and_(
                this,
                messages.c.role == Role.ASSISTANT.value,
                messages.c.state != MessageState.STREAMING.value,
            )
        )
        .values(**values)
    )
    if done.rowcount:  # type: ignore[attr-defined]
        return
    row = (await tx.execute(select(messages.c.role).where(this))).first()
    name = names.message(session_id, message_id)
    if row is None:
        raise NotFound(f"message {name} was not found", reason=Reason.MESSAGE_NOT_FOUND)
    if row.role != Role.ASSISTANT.value:
        raise FailedPrecondition(
            "only the assistant's answers take feedback", reason=Reason.NOT_AN_ANSWER
        )
    raise FailedPrecondition(
        "the answer is still being written; rate it when its turn has ended",
        reason=Reason.ANSWER_IN_PROGRESS,
    )
