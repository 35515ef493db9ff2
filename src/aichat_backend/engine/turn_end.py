"""A turn's last event, made from its run: the answer, every model call's usage, and
how full the context was at the last call."""

from __future__ import annotations

from aichat_backend.domain import ToolCall
from aichat_backend.engine.events import TurnEnded, TurnOutcome
from aichat_backend.engine.turn_run import TurnRun
from aichat_backend.engine.usage import copy_usage
from aichat_backend.errors import AichatError


def turn_ended(
    run: TurnRun,
    outcome: TurnOutcome,
    error: AichatError | None = None,
    pending: list[ToolCall] | None = None,
) -> TurnEnded:
    """The turn's last event: its current answer, and the usage of all its model calls."""
    ended = TurnEnded(
        outcome=outcome,
        message=run.message,
        error=error,
        user_message=run.user_message,
        pending=pending or [],
        model=run.message.model,
        answers=list(run.answers),
    )
    copy_usage(ended, run)
    if run.context is not None and run.last_input_tokens:
        ended.context = run.context.fill(run.last_input_tokens)
    return ended
