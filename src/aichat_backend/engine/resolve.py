"""ResolveToolCalls: the user's decisions on waiting calls, then the turn resumes.

Calls waiting longer than the approval TTL are denied first, and each decision is
recorded once (``resolution_open``); the approved calls run, and when nothing waits any
more the model gets the results in a new round, with the session's history read again
(``resumed_round``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from aichat_backend.domain import ToolCallState
from aichat_backend.engine.events import ToolCallUpdate, TurnEnded, TurnEvent, TurnStarted
from aichat_backend.engine.lifecycle import TurnLifecycle
from aichat_backend.engine.requests import ResolveRequest
from aichat_backend.engine.resolution_open import ResolutionOpener
from aichat_backend.engine.resumed_round import ResumedRound
from aichat_backend.engine.rounds import TurnRounds


class Resolver:
    def __init__(
        self,
        opener: ResolutionOpener,
        lifecycle: TurnLifecycle,
        rounds: TurnRounds,
        next_round: ResumedRound,
    ) -> None:
        self._opener = opener
        self._lifecycle = lifecycle
        self._rounds = rounds
        self._next_round = next_round

    async def resolve(self, req: ResolveRequest) -> AsyncGenerator[TurnEvent, None]:
        opened = await self._opener.open(req)
        if isinstance(opened, TurnEnded):  # an idempotent replay
            yield opened
            return
        run, decisions, history = opened
        assert run.user_message is not None
        async with self._lifecycle.driving(run):
            yield TurnStarted(run.user_message, run.message.name, run.model, continues_answer=True)
            for call in decisions.shown:
                if call.state is not ToolCallState.APPROVED:
                    yield ToolCallUpdate(call)
            async for event in self._rounds.run_tools(run, decisions.runnable):
                yield event
            if decisions.remaining:
                remaining = [p.call for p in decisions.remaining]
                async for event in self._rounds.await_approval(run, remaining):
                    yield event
                return
            async for compacted in self._next_round.open(run, history):
                yield compacted
            async for event in self._rounds.run(run):
                yield event
