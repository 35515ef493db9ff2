"""The life of running turns: which are active, their leases, shutdown, cut-off turns.

Every running turn is entered through ``TurnLifecycle.driving``: it then counts as
active (shutdown waits for it), its session's lease is renewed, and the event loop's
load is sampled for it. If its events stop before the last one (the client went away,
its deadline passed, an error), the upstream call is closed and what the turn had is
stored in the background and its session freed. Writes that must outlive the caller
(the final answer, a cut-off turn's partial answer) are tracked so shutdown can let
them land (``drain``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from aichat_backend.domain import MessageState
from aichat_backend.engine.leases import Lease, LeaseKeeper
from aichat_backend.engine.loop_load import LoopLoad
from aichat_backend.engine.observer import TurnObserver
from aichat_backend.engine.turn_run import TurnRun
from aichat_backend.engine.turn_store import TurnStore

log = logging.getLogger(__name__)
T = TypeVar("T")


class TurnLifecycle:
    def __init__(
        self, store: TurnStore, lease_seconds: float, observer: TurnObserver | None = None
    ) -> None:
        self._store = store
        self._observer = observer or TurnObserver()
        self._active: set[TurnRun] = set()
        # The task driving each running turn, by turn id: what ``cancel`` stops.
        self._drivers: dict[str, asyncio.Task[Any]] = {}
        self._leases = LeaseKeeper(store, lease_seconds)
        self._load = LoopLoad()
        self._writes: set[asyncio.Future[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def active_turns(self) -> int:
        return len(self._active)

    def active_owners(self) -> list[tuple[str, str]]:
        """(user id, model) of each running turn."""
        return [(run.user_id, run.model) for run in self._active]

    @property
    def load(self) -> LoopLoad:
        """How busy the event loop is, for the rounds' streams to pace their deltas."""
        return self._load

    def driving(self, run: TurnRun) -> Driving:
        """Enter around a turn's events (``async with``)."""
        return Driving(self, run)

    def admit(self, run: TurnRun) -> Lease:
        self._active.add(run)
        task = asyncio.current_task()
        if task is not None:
            self._drivers[run.turn_id] = task
        self._idle.clear()
        self._load.hold()
        return self._leases.hold(run.user_id, run.session_id, run.turn_id)

    def retire(self, run: TurnRun, lease: Lease | None, cut_off: str | None) -> None:
        """The turn's events stopped; ``cut_off`` says why when that was before the last."""
        try:
            if cut_off is not None:
                self.finalize_in_background(run, cut_off)
        finally:
            if run.stream is not None:
                run.stream.cancel()
            if lease is not None:
                self._leases.drop(lease)
            self._load.release()
            self._active.discard(run)
            self._drivers.pop(run.turn_id, None)
            if not self._active:
                self._idle.set()

    def cancel(self, turn_id: str) -> bool:
        """Stop the running turn ``turn_id`` now, as if its caller had hung up: the task
        driving it is cancelled, so whatever it awaits (the model, a tool, the database)
        stops, its answer so far is stored INCOMPLETE and observers hear ``turn_cut_off``.
        False if no such turn runs here.

        For turns driven by a task of their own (detached turns): cancelling a gRPC
        handler's task would leave its client waiting for a status that never comes, so
        an attached turn is cancelled by its caller hanging up.
        """
        task = self._drivers.get(turn_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    # --- shutdown ------------------------------------------------------------------

    async def wait_idle(self, limit: float) -> bool:
        """Wait for running turns to end by themselves; False if some still run."""
        try:
            async with asyncio.timeout(limit):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False

    def stop_all(self) -> None:
        """Ask every running turn to end now (CANCELLED, partial answer stored)."""
        for run in self._active:
            run.stop_requested = True
            if run.stream is not None:
                run.stream.stop()

    async def drain(self) -> None:
        """Let the final writes of ended and cut-off turns reach the database."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)
        await self._leases.close()
        self._load.close()

    async def settle(self) -> None:
        """Wait for the background work started so far (final writes, compactions)."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    # --- writes that outlive their caller -------------------------------------------

    async def shielded(self, work: Awaitable[T]) -> T:
        """Run ``work`` to its end even if the caller is cancelled meanwhile."""
        task = asyncio.ensure_future(work)
        self._track(task)
        return await asyncio.shield(task)

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` in the background; shutdown (``drain``) waits for it."""
        task = asyncio.create_task(work)
        self._track(task)
        task.add_done_callback(_log_failure)
        return task

    def finalize_in_background(self, run: TurnRun, reason: str = "cancelled") -> None:
        """Store what a turn had when it was cut off, and free its session."""
        stream = run.stream
        if stream is not None:
            stream.cancel()
        text = stream.text if stream is not None else ""
        reasoning = stream.reasoning() if stream is not None else ()
        finished = stream.finished if stream is not None else None

        async def finalize() -> None:
            if run.claimed is not None:
                try:
                    await run.claimed
                except BaseException:
                    return  # nothing was stored, so there is nothing to finish
            m = run.message
            if not run.finalized:
                m.text, m.state, m.finish_reason = text, MessageState.INCOMPLETE, reason
                m.reasoning = list(reasoning)
                if finished is not None:
                    m.input_tokens = finished.input_tokens
                    m.output_tokens = finished.output_tokens
                m.model = m.model or run.model
            await self._store.cut_off(
                run.user_id,
                run.session_id,
                run.turn_id,
                m,
                f"the turn was {reason} while the tool ran",
                write_answer=not run.finalized,
            )

        # Once stored (or not), observers hear of it: the turn's event log writes its last
        # event, so whoever resumes the turn gets an end.
        self.spawn(finalize()).add_done_callback(
            lambda _: self._observer.turn_cut_off(run.turn_id, run.message, reason)
        )

    def _track(self, task: asyncio.Future[Any]) -> None:
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)


class Driving:
    """A turn's bookkeeping, entered around its events.

    A class rather than a generator layer around the events: each message of every
    held stream would pass through that layer.
    """

    __slots__ = ("_lease", "_lifecycle", "_run")

    def __init__(self, lifecycle: TurnLifecycle, run: TurnRun) -> None:
        self._lifecycle = lifecycle
        self._run = run
        self._lease: Lease | None = None

    async def __aenter__(self) -> None:
        self._lease = self._lifecycle.admit(self._run)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        cut_off: str | None = None
        if kind is not None and not self._run.ended:
            stopped = issubclass(kind, asyncio.CancelledError | GeneratorExit)
            cut_off = "cancelled" if stopped else "error"
        self._lifecycle.retire(self._run, self._lease, cut_off)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a turn's background write failed: %s", type(task.exception()).__name__)
