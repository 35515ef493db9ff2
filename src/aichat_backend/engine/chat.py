"""The chat turn: context → model → tools → approval → the answer stored once per round.

No protobuf or gRPC here: the engine takes a ``TurnRequest`` (or a ``ResolveRequest``)
and yields ``TurnEvent``s. Whatever ends a turn (the model, the client going away, a
failure, shutdown), the user message and every token produced so far are stored, and
the last event says how it ended.

``ChatEngine`` is the front door; the rooms behind it:

- ``turn_start``: a turn from its request to its last event;
- ``turn_open``: checks, the context read, the first write, idempotent replays;
- ``round_open``: when a round's request leaves (after a compaction, maybe);
- ``rounds``: a model call and the tool round after it;
- ``final_write``: the turn's last write, kept through a database blip;
- ``resolve``: decisions on waiting tool calls, then the turn resumes;
- ``resolution_open``: expiry, the decisions checked and recorded once, replays;
- ``resumed_round``: a resolution's next round, its history read again;
- ``lifecycle``: running turns, their leases, cut-off turns, shutdown;
- ``requests``: the request types and the engine's settings;
- ``titles``: a session's title from a model, after its first answer, in the background.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from aichat_backend.engine.compaction import Compactor
from aichat_backend.engine.context_plan import ContextPlanner
from aichat_backend.engine.events import TurnEvent
from aichat_backend.engine.final_write import FinalWrites
from aichat_backend.engine.lifecycle import TurnLifecycle
from aichat_backend.engine.observer import TurnObserver
from aichat_backend.engine.pdf_extractor import PdfExtractor
from aichat_backend.engine.requests import (
    MAX_TEXT_CHARS,
    ChatConfig,
    ResolveRequest,
    TurnRequest,
)
from aichat_backend.engine.resolution_open import ResolutionOpener
from aichat_backend.engine.resolve import Resolver
from aichat_backend.engine.resumed_round import ResumedRound
from aichat_backend.engine.round_open import RoundOpener
from aichat_backend.engine.rounds import NO_MORE_TOOLS, TurnRounds
from aichat_backend.engine.titles import TitleWriter
from aichat_backend.engine.turn_open import TurnOpener
from aichat_backend.engine.turn_setup import TurnSetup
from aichat_backend.engine.turn_start import TurnStarter
from aichat_backend.engine.turn_store import TurnStore
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.tools.base import ToolProvider


class ChatEngine:
    def __init__(
        self,
        store: TurnStore,
        catalogue: ModelCatalogue,
        config: ChatConfig,
        tools: ToolProvider | None = None,
        observer: TurnObserver | None = None,
        pdf: PdfExtractor | None = None,
    ) -> None:
        self._catalogue = catalogue
        observer = observer or TurnObserver()
        self._lifecycle = TurnLifecycle(store, config.lease_seconds, observer)
        self._final = FinalWrites(
            store,
            self._lifecycle,
            config.final_write_seconds,
            config.final_write_background_seconds,
        )
        compactor = Compactor(catalogue, store, config.compaction)
        planner = ContextPlanner(catalogue, compactor, config.context)
        rounds = TurnRounds(
            store,
            config,
            tools,
            observer,
            self._lifecycle,
            self._final,
            catalogue.prices_of,
            planner,
        )
        self._pdf = pdf or PdfExtractor()
        self.titles: TitleWriter | None = None
        if config.title_model:
            self.titles = TitleWriter(
                store,
                catalogue,
                config.title_model,
                timeout_seconds=config.title_timeout_seconds,
                max_concurrent=config.title_max_concurrent,
            )
        setup = TurnSetup(catalogue, config, tools, planner)
        round_opener = RoundOpener(planner, rounds, self._lifecycle)
        self._starter = TurnStarter(
            TurnOpener(store, setup, catalogue, config, round_opener, self._pdf),
            self._lifecycle,
            round_opener,
            rounds,
            self.titles,
        )
        self._resolver = Resolver(
            ResolutionOpener(store, setup, config, tools),
            self._lifecycle,
            rounds,
            ResumedRound(store, setup, observer, round_opener),
        )

    @property
    def pdf_extractor(self) -> PdfExtractor:
        return self._pdf

    @property
    def catalogue(self) -> ModelCatalogue:
        return self._catalogue

    def stream_turn(self, req: TurnRequest) -> AsyncGenerator[TurnEvent, None]:
        """The events of one StreamChat / SendMessage turn, ending with TurnEnded.

        Hands over the turn's own generator (no layer of its own per event).
        """
        return self._starter.stream_turn(req)

    def resolve(self, req: ResolveRequest) -> AsyncGenerator[TurnEvent, None]:
        """The events of one ResolveToolCalls, ending with TurnEnded."""
        return self._resolver.resolve(req)

    async def settle(self) -> None:
        """Wait for the background work started so far (see ``TurnLifecycle.settle``)."""
        await self._lifecycle.settle()

    def cancel_turn(self, turn_id: str) -> bool:
        """Stop a detached turn running here (see ``TurnLifecycle.cancel``)."""
        return self._lifecycle.cancel(turn_id)

    # --- shutdown ------------------------------------------------------------------

    @property
    def active_turns(self) -> int:
        return self._lifecycle.active_turns

    def active_turn_owners(self) -> list[tuple[str, str]]:
        """(user id, model) of each running turn, for the operator API (read-only)."""
        return self._lifecycle.active_owners()

    async def wait_idle(self, limit: float) -> bool:
        """Wait for running turns to end by themselves; False if some still run."""
        return await self._lifecycle.wait_idle(limit)

    def stop_all(self) -> None:
        """Ask every running turn to end now (CANCELLED, partial answer stored)."""
        self._lifecycle.stop_all()

    async def drain_writes(self) -> None:
        """Let the final writes of ended and cancelled turns reach the database."""
        self._final.close()
        await self._lifecycle.drain()
        await self._pdf.aclose()
        if self.titles is not None:
            await self.titles.aclose()


__all__ = [
    "MAX_TEXT_CHARS",
    "NO_MORE_TOOLS",
    "ChatConfig",
    "ChatEngine",
    "ResolveRequest",
    "TurnRequest",
]
