"""Idempotent requests (AIP-155): a request_id seen before gets the first turn's result."""

from __future__ import annotations

from aichat_backend import names
from aichat_backend.domain import MessageState, ToolCallState, session_not_found
from aichat_backend.engine.events import TurnEnded, TurnOutcome
from aichat_backend.engine.usage import copy_usage
from aichat_backend.errors import Aborted, AichatError, Cancelled
from aichat_backend.reasons import Reason
from aichat_backend.records import StoredTurn, request_id_reused, turn_in_progress


def replay(stored: StoredTurn, fingerprint: str) -> TurnEnded:
    """The last event of a stored turn, as it ended. A request that is not the one the
    request_id named first is refused; one whose turn still runs is told which turn
    (``turn_in_progress``: the API layer then reads that turn's stream)."""
    if stored.fingerprint and stored.fingerprint != fingerprint:
        raise request_id_reused()
    if not stored.answers:
        raise session_not_found("(deleted)")
    answer = stored.answers[-1]
    if answer.state is MessageState.STREAMING:
        turn = names.turn(answer.session_id, stored.turn_id) if stored.turn_id else ""
        raise turn_in_progress(turn)
    error: AichatError | None = None
    pending = [c for c in answer.tool_calls if c.state is ToolCallState.PENDING_APPROVAL]
    if pending:
        outcome = TurnOutcome.AWAITING_APPROVAL
    elif answer.state is MessageState.COMPLETE:
        outcome = TurnOutcome.COMPLETED
    elif answer.finish_reason == TurnOutcome.CANCELLED.value:
        outcome = TurnOutcome.CANCELLED
        error = Cancelled("this request's turn was cancelled", reason=Reason.TURN_CANCELLED)
    else:
        outcome = TurnOutcome.FAILED
        error = Aborted(
            "this request's turn failed earlier; send the message again with a new request_id",
            reason=Reason.TURN_FAILED,
        )
    ended = TurnEnded(
        outcome=outcome,
        message=answer,
        error=error,
        user_message=stored.user_message,
        pending=pending,
        model=answer.model,
        answers=[m.name for m in stored.answers],
    )
    copy_usage(ended, answer)  # as before: the usage its last answer stored
    return ended
