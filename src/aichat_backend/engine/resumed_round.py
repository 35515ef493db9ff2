"""A resolution's next round: nothing waits any more, and the model reads the results.

The round's answer placeholder is stored and the session's history read again (as
much as its memory limit lets a turn read); the request is built from it
(``TurnSetup.next_round``: the turn's own messages, after the newest of the
conversation that fit the window), and the round opens (``round_open``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from aichat_backend.domain import MessageState
from aichat_backend.engine.events import ContextCompacted
from aichat_backend.engine.observer import TurnObserver
from aichat_backend.engine.round_open import RoundOpener
from aichat_backend.engine.turn_run import TurnRun
from aichat_backend.engine.turn_setup import TurnSetup
from aichat_backend.engine.turn_store import TurnStore


class ResumedRound:
    def __init__(
        self,
        store: TurnStore,
        setup: TurnSetup,
        observer: TurnObserver,
        round_opener: RoundOpener,
    ) -> None:
        self._store = store
        self._setup = setup
        self._observer = observer
        self._round = round_opener

    async def open(self, run: TurnRun, history: int) -> AsyncGenerator[ContextCompacted, None]:
        """Start the new round, ``history`` messages of the session read; its request has
        left when this ends (after a compaction, if the conversation outgrew the window)."""
        run.message.state = MessageState.COMPLETE  # its calls are decided or have run
        run.message, context = await self._store.next_round(
            run.user_id, run.session_id, run.message, run.model, history
        )
        run.answers.append(run.message.name)
        self._observer.round_started(run.turn_id, run.message.id)
        self._setup.next_round(run, context, history)
        async for compacted in self._round.open(run):
            yield compacted
