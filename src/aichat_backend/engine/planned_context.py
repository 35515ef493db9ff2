"""One turn's planned context (``ContextPlan``): the loaded path, the room, what is sent,
and how full the window is; and the error a message that cannot fit it gets. The
planner (``context_plan``) makes and changes it; the turn carries it (``TurnRun``).
"""

from __future__ import annotations

from dataclasses import dataclass

from aichat_backend.domain import Message
from aichat_backend.engine.context_budget import Budget, Choice
from aichat_backend.engine.events import ContextFill
from aichat_backend.errors import InvalidArgument
from aichat_backend.providers.context_errors import ContextTooLong
from aichat_backend.reasons import Reason


@dataclass(slots=True)
class ContextPlan:
    """One turn's context: the loaded path, the room, and what of it is sent."""

    path: list[Message]  # the conversation before the turn, oldest first
    budget: Budget
    choice: Choice
    base_system: str
    fixed: int  # unscaled tokens of system prompt, tools and the new message
    fixed_before: int  # the same without the new message (earlier calls read that)
    user_tokens: int
    message_count: int  # the session's messages before this turn
    model: str
    pending: bool = False  # a compaction must run before the model is called
    # The summary is about to leave the messages a turn reads: carry it on (fold more)
    # in the background, or now, before the model is called, at the last turn it can.
    retain: bool = False
    carry_now: bool = False
    retried: bool = False
    history_sent: int = 0  # request.messages[:history_sent] come from ``path``

    def fill(self, tokens: int | None = None) -> ContextFill:
        c = self.choice
        verbatim = len(self.path) - c.start
        return ContextFill(
            tokens=c.tokens if tokens is None else tokens,
            window_tokens=self.budget.window,
            output_reserve_tokens=self.budget.output_reserve + self.budget.margin,
            messages=verbatim + 1,
            omitted_messages=max(0, self.message_count - verbatim),
            summarized=c.summary is not None,
        )

    def whole_tokens(self) -> int:
        """Scaled tokens of the context if nothing after the summary were left out."""
        c = self.choice
        skipped = c.start - c.summary_at - 1
        return c.tokens + sum(c.costs[:skipped])


def does_not_fit(plan: ContextPlan, refusal: ContextTooLong | None) -> InvalidArgument:
    """MESSAGE_EXCEEDS_CONTEXT_WINDOW, naming the sizes (the provider's count when it said one)."""
    b = plan.budget
    meta = {
        "message_tokens": str(plan.user_tokens),
        "context_window": str(
            refusal.context_window if refusal and refusal.context_window else b.window
        ),
        "output_reserve_tokens": str(b.output_reserve + b.margin),
        "model": plan.model,
    }
    if refusal is not None and refusal.input_tokens:
        meta["input_tokens"] = str(refusal.input_tokens)
    said = (
        f", the provider counted {refusal.input_tokens}" if refusal and refusal.input_tokens else ""
    )
    return InvalidArgument(
        f"The message does not fit the model's context window: about {plan.user_tokens} "
        f"tokens{said}; the window of {plan.model!r} is {meta['context_window']} tokens, "
        f"{meta['output_reserve_tokens']} of them kept for the answer. Send a shorter "
        "message (or smaller files), or use a model with a larger window.",
        reason=Reason.MESSAGE_EXCEEDS_CONTEXT_WINDOW,
        metadata=meta,
    )
