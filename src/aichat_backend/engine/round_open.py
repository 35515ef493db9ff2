"""When a round's model request leaves: at once, or after its context is compacted.

A conversation that outgrew the model's window is compacted first (``ContextPlanner.
compact``, which says so with ContextCompacted) and the request leaves after it; one
whose summary is about to leave what the next turns read carries it on in the
background, beside the answer. A new turn sends its request early, before its first
write commits, when nothing has to be compacted (``send_early``); ``open`` then only
does what is left. Both StreamChat and a resolution's next round open their round here.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from aichat_backend.engine.context_plan import ContextPlanner
from aichat_backend.engine.events import ContextCompacted
from aichat_backend.engine.lifecycle import TurnLifecycle
from aichat_backend.engine.rounds import TurnRounds
from aichat_backend.engine.turn_run import TurnRun


class RoundOpener:
    def __init__(
        self, planner: ContextPlanner, rounds: TurnRounds, lifecycle: TurnLifecycle
    ) -> None:
        self._planner = planner
        self._rounds = rounds
        self._lifecycle = lifecycle

    def send_early(self, run: TurnRun) -> None:
        """Send the request now, unless the conversation must be compacted first."""
        if run.context is None or not run.context.pending:
            run.stream = self._rounds.open_stream(run)

    async def open(self, run: TurnRun) -> AsyncGenerator[ContextCompacted, None]:
        """Compact first if the conversation outgrew the window, else carry the summary on
        in the background; then send the request, if it has not left yet."""
        plan = run.context
        if plan is not None and plan.pending:
            async for compacted in self._planner.compact(run, plan):
                yield compacted
        elif plan is not None and plan.retain:
            self._lifecycle.spawn(self._planner.carry_on(run, plan))
        if run.stream is None:
            run.stream = self._rounds.open_stream(run)
