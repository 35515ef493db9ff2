"""A StreamChat / SendMessage turn, from its request to its last event.

The turn is opened (``turn_open``: checks, context, the first write, replays), then
driven: once its first write has committed, TurnStarted names its answer, the calls a
new message denied are shown, its round opens (``round_open``: compacted first if the
conversation outgrew the window) and its rounds run; a new conversation's title is
asked for after the first answer.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from aichat_backend.engine.events import ToolCallUpdate, TurnEnded, TurnEvent, TurnStarted
from aichat_backend.engine.lifecycle import TurnLifecycle
from aichat_backend.engine.requests import TurnRequest
from aichat_backend.engine.round_open import RoundOpener
from aichat_backend.engine.rounds import TurnRounds
from aichat_backend.engine.titles import TitleWriter, starts_conversation
from aichat_backend.engine.turn_open import TurnOpener, first_write


class TurnStarter:
    def __init__(
        self,
        opener: TurnOpener,
        lifecycle: TurnLifecycle,
        round_opener: RoundOpener,
        rounds: TurnRounds,
        titles: TitleWriter | None = None,
    ) -> None:
        self._opener = opener
        self._lifecycle = lifecycle
        self._round = round_opener
        self._rounds = rounds
        self._titles = titles

    async def stream_turn(self, req: TurnRequest) -> AsyncGenerator[TurnEvent, None]:
        run = await self._opener.open(req)
        if isinstance(run, TurnEnded):  # an idempotent replay
            yield run
            return
        async with self._lifecycle.driving(run):
            begun = await first_write(run)
            plan = run.context
            fill = None
            if plan is not None:
                fill = plan.fill(plan.whole_tokens() if plan.pending else None)
            yield TurnStarted(begun.user_message, begun.answer.name, run.model, context=fill)
            for call in begun.denied:
                yield ToolCallUpdate(call)
            async for compacted in self._round.open(run):
                yield compacted
            titles = self._titles if run.unnamed and starts_conversation(req, begun) else None
            async for event in self._rounds.run(run):
                if titles is not None and isinstance(event, TurnEnded):
                    # Before the last event leaves (the generator may end at that yield).
                    event.title_pending = titles.after_first_answer(req.user_id, req.text, event)
                yield event
