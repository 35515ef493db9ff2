"""A turn's context by tokens: what is sent, when it is compacted, and the one retry.

``ContextPlanner.plan`` runs on the way to the first token and only chooses (pure
arithmetic over the loaded messages, ``context_budget``); when the conversation does not
fit, the turn compacts (``compact``) after its TurnStarted and before its model call,
and says so with ContextCompacted. A provider's context-length refusal
(``ContextTooLong``) gets one compaction and one retry (``after_refusal``); one more
refusal, or a new message that alone does not fit, fails the turn with
MESSAGE_EXCEEDS_CONTEXT_WINDOW naming the sizes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import AsyncGenerator, Sequence

from aichat_backend.domain import ContextSummary, Message, Role
from aichat_backend.engine.compaction import Compactor
from aichat_backend.engine.context import to_chat_messages
from aichat_backend.engine.context_budget import (
    IMAGE_TOKENS,
    MESSAGE_OVERHEAD,
    SCALE_MIN,
    Budget,
    ContextConfig,
    budget_for,
    choose,
    fold_point,
    summary_message_text,
    text_tokens,
)
from aichat_backend.engine.events import ContextCompacted
from aichat_backend.engine.planned_context import ContextPlan, does_not_fit
from aichat_backend.engine.turn_run import TurnRun
from aichat_backend.errors import AichatError
from aichat_backend.providers.base import ChatMessage, ToolSpec
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.providers.context_errors import ContextTooLong

log = logging.getLogger(__name__)

SCALE_AFTER_REFUSAL_MAX = 4.0


class ContextPlanner:
    def __init__(
        self, catalogue: ModelCatalogue, compactor: Compactor | None, config: ContextConfig
    ) -> None:
        self._catalogue = catalogue
        self._compactor = compactor
        self._config = config
        self._tool_tokens: dict[tuple[str, str], int] = {}

    def tools_tokens(self, tools: Sequence[ToolSpec]) -> int:
        total = 0
        for t in tools:
            key = (t.name, t.description)
            cost = self._tool_tokens.get(key)
            if cost is None:  # a tool's schema rarely changes: counted once per process
                cost = MESSAGE_OVERHEAD + text_tokens(t.name) + text_tokens(t.description)
                cost += text_tokens(json.dumps(t.input_schema))
                self._tool_tokens[key] = cost
            total += cost
        return total

    def plan(
        self,
        path: list[Message],
        system_prompt: str,
        tools: Sequence[ToolSpec],
        user: ChatMessage | None,
        model: str,
        requested_output: int | None,
        message_count: int,
        turn_tokens: int = 0,
        read_limit: int = 0,
    ) -> ContextPlan:
        """``path``: the conversation before the turn; ``user``: the turn's new message,
        or None and ``turn_tokens``, the estimate of the turn's own messages so far (a
        resolution's user message and rounds), which are always sent after the path."""
        entry = self._catalogue.get(model)
        budget = budget_for(
            entry.context_window or 8192,
            entry.max_output_tokens or 2048,
            requested_output,
            self._config.margin_ratio,
        )
        fixed_before = MESSAGE_OVERHEAD + text_tokens(system_prompt) + self.tools_tokens(tools)
        user_tokens = turn_tokens
        if user is not None:
            user_tokens += (
                MESSAGE_OVERHEAD + text_tokens(user.text) + IMAGE_TOKENS * len(user.images)
            )
        choice = choose(path, fixed_before + user_tokens, budget, fixed_before=fixed_before)
        plan = ContextPlan(
            path=path,
            budget=budget,
            choice=choice,
            base_system=system_prompt,
            fixed=fixed_before + user_tokens,
            fixed_before=fixed_before,
            user_tokens=user_tokens,
            message_count=message_count,
            model=model,
        )
        compacting = self._compactor is not None and self._config.compaction
        # The summary is about to leave the messages a turn reads (``read_limit``, the
        # count bound): fold on, or the next turn would lose what it stands for.
        # Two turns ahead it is folded on in the background, beside this turn's answer;
        # at the last turn that still reads it, before the answer if that has not happened.
        carry = (
            compacting
            and not choice.overflow
            and choice.summary is not None
            and 0 < read_limit <= len(path)
            and choice.summary_at < 4
        )
        plan.carry_now = carry and choice.summary_at < 2
        plan.retain = carry and not plan.carry_now
        plan.pending = compacting and (choice.overflow or plan.carry_now)
        return plan

    @staticmethod
    def half_point(plan: ContextPlan) -> int:
        """A cut folding the older half of the messages after the summary (at a user's)."""
        first = plan.choice.summary_at + 1
        cut = first + (len(plan.path) - first) // 2
        while cut < len(plan.path) and plan.path[cut].role is not Role.USER:
            cut += 1
        return cut

    async def carry_on(self, run: TurnRun, plan: ContextPlan) -> None:
        """Fold the older half of the messages after the summary into a new one, off the
        turn's way (its request is made already): the summary stays within what the
        next turns read. A failure only leaves it to the next turn to try."""
        c = plan.choice
        first = c.summary_at + 1
        cut = self.half_point(plan)
        if self._compactor is None or cut <= first or cut >= len(plan.path):
            return
        try:
            await self._compactor.compact(
                run.user_id,
                run.session_id,
                c.summary,
                plan.path[first:cut],
                run.model,
                self.summary_limit(plan),
            )
        except AichatError as exc:
            log.warning(
                "carrying a summary on failed; the next turn tries again",
                extra={"reason": exc.reason, "session": run.session_id},
            )

    def summary_limit(self, plan: ContextPlan) -> int:
        """A summary's most tokens: the setting, at most a quarter of the room."""
        return max(32, min(self._config.summary_max_tokens, plan.budget.input_tokens // 4))

    def system_prompt(self, plan: ContextPlan) -> str:
        summary = plan.choice.summary
        if summary is None:
            return plan.base_system
        text = summary_message_text(summary)
        return f"{plan.base_system}\n\n{text}" if plan.base_system else text

    def history(self, plan: ContextPlan) -> list[ChatMessage]:
        sent = to_chat_messages(plan.path[plan.choice.start :])
        plan.history_sent = len(sent)
        return sent

    async def compact(
        self, run: TurnRun, plan: ContextPlan, *, after_refusal: bool = False
    ) -> AsyncGenerator[ContextCompacted, None]:
        """Fold what does not fit into a summary and make ``run.request`` from the rest;
        without a summary (compaction off, or the summarizer failed) leave it out."""
        plan.pending = False
        choice = plan.choice
        first = choice.summary_at + 1
        limit = self.summary_limit(plan)
        allowance = int(limit * choice.scale)
        room = int(plan.budget.input_tokens * self._config.keep_ratio) - allowance
        cut = fold_point(plan.path, choice, max(room, choice.fixed))
        if cut <= first and plan.carry_now:
            cut = self.half_point(plan)
        plan.retain = plan.carry_now = False  # this compaction moves the summary on
        if cut <= first:
            return
        before = plan.whole_tokens()
        folded = plan.path[first:cut]
        summary: ContextSummary | None = None
        if self._compactor is not None and self._config.compaction:
            try:
                summary = await self._compactor.compact(
                    run.user_id, run.session_id, choice.summary, folded, run.model, limit
                )
            except AichatError as exc:
                log.warning(
                    "compaction failed; older messages are left out this turn",
                    extra={"reason": exc.reason, "session": run.session_id, "detail": str(exc)},
                )
        if summary is not None:
            plan.path[cut - 1] = dataclasses.replace(plan.path[cut - 1], context_summary=summary)
            plan.choice = choose(plan.path, plan.fixed, plan.budget, choice.scale)
        else:  # left out: the path starts after them (and an earlier summary is lost)
            plan.path = plan.path[cut:]
            plan.choice = choose(plan.path, plan.fixed, plan.budget, choice.scale)
        rest = run.request.messages[plan.history_sent :]
        history = self.history(plan)
        run.request = dataclasses.replace(
            run.request,
            system_prompt=self.system_prompt(plan),
            messages=(*history, *rest),
        )
        if summary is not None:
            yield ContextCompacted(
                through_name=folded[-1].name,
                folded_messages=len(folded),
                tokens_before=before,
                tokens_after=plan.choice.tokens,
                window_tokens=plan.budget.window,
                summary=summary,
                after_refusal=after_refusal,
            )

    def retries(self, run: TurnRun, error: AichatError) -> bool:
        """Whether a failed model call is a context refusal this turn answers itself:
        before any of the answer reached the caller."""
        stream = run.stream
        return isinstance(error, ContextTooLong) and (stream is None or not stream.text)

    async def after_refusal(
        self, run: TurnRun, refusal: AichatError
    ) -> AsyncGenerator[ContextCompacted, None]:
        """The provider said the request is too long: count as it counts, fold, retry once.
        Raises MESSAGE_EXCEEDS_CONTEXT_WINDOW when nothing is left to fold or leave out."""
        plan = run.context
        assert plan is not None and isinstance(refusal, ContextTooLong)
        if plan.retried:
            raise does_not_fit(plan, refusal)
        plan.retried = True
        c = plan.choice
        sent = max(1, int(c.tokens / c.scale))
        scale = c.scale * 1.5
        if refusal.input_tokens:
            scale = refusal.input_tokens / sent * 1.1
        scale = min(SCALE_AFTER_REFUSAL_MAX, max(SCALE_MIN, scale, c.scale))
        # The window the provider holds to may be smaller than the catalogue says (a
        # server started with a shorter context): the one it names, else less than what
        # it refused.
        window = refusal.context_window or int((refusal.input_tokens or c.tokens) * 0.75)
        if window < plan.budget.window:
            b = plan.budget
            plan.budget = Budget(
                window, min(b.output_reserve, window // 4), int(window * self._config.margin_ratio)
            )
        plan.choice = choose(plan.path, plan.fixed, plan.budget, scale)
        if plan.choice.start == plan.choice.summary_at + 1 == len(plan.path) or not plan.path:
            raise does_not_fit(plan, refusal)
        # Everything after the summary is up for folding, however it was chosen before.
        plan.choice = dataclasses.replace(plan.choice, overflow=True)
        async for event in self.compact(run, plan, after_refusal=True):
            yield event
