"""A turn's last write, kept through a database blip (issue 19 C).

The last write (the answer, the session's release, the usage: ``TurnStore.finish``)
is idempotent: it only moves an answer that is still being written, so sending it again
after a failure whose outcome is unknown (a COMMIT held up in a black-holed network may
land later) stores the answer and counts its usage once.

So it is retried within the turn's deadline. If the database is still away then, the
turn ends FAILED with the database's status, and the same write keeps being tried in
the background, bounded in time: the moment the database answers again the answer is
stored as the client saw it and the session is freed (not after its lease runs out),
and a retry with the same request_id is told the turn COMPLETED instead of running it
again. Until then such a retry hears TURN_IN_PROGRESS and comes back.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aichat_backend.domain import Message
from aichat_backend.engine.lifecycle import TurnLifecycle
from aichat_backend.engine.turn_run import TurnRun
from aichat_backend.engine.turn_store import TurnStore
from aichat_backend.errors import DatabaseUnavailable
from aichat_backend.records import Usage

log = logging.getLogger(__name__)

# Left of the caller's deadline to send the last event after the last attempt.
REPORT_MARGIN = 0.5
FIRST_BACKOFF = 0.05
MAX_BACKOFF = 1.0


class FinalWrites:
    def __init__(
        self,
        store: TurnStore,
        lifecycle: TurnLifecycle,
        in_turn_seconds: float,
        background_seconds: float,
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._in_turn = in_turn_seconds
        self._background = background_seconds
        self._closing = asyncio.Event()

    async def land(
        self, run: TurnRun, answer: Message, usage: Usage | None
    ) -> DatabaseUnavailable | None:
        """Store the turn's last write; the error if it could not be stored in time.

        Shielded: a client leaving meanwhile must not lose the answer.
        """
        return await self._lifecycle.shielded(self._land(run, answer, usage))

    def close(self) -> None:
        """Shutdown: background writes make one last attempt now, then give up (the
        start-up sweep marks what is left INTERRUPTED)."""
        self._closing.set()

    async def _land(
        self, run: TurnRun, answer: Message, usage: Usage | None
    ) -> DatabaseUnavailable | None:
        until = time.monotonic() + self._in_turn
        if run.deadline is not None:
            until = min(until, run.deadline - REPORT_MARGIN)
        backoff = FIRST_BACKOFF
        # The first attempt has the database's own bound: a turn that ends by its
        # deadline still stores its answer, whether or not the caller is there to hear.
        limit: float | None = None
        while True:
            error = await self._attempt(run, answer, usage, limit)
            limit = until - time.monotonic()
            if error is None:
                return None
            if time.monotonic() + backoff >= until:
                break
            await asyncio.sleep(backoff)  # a back-off between attempts, not a wait
            backoff = min(backoff * 2, MAX_BACKOFF)
        log.warning("could not store a turn's answer yet; trying again in the background")
        self._lifecycle.spawn(self._settle(run, answer, usage))
        return DatabaseUnavailable(
            "the answer could not be stored: the database is not reachable right now. It is "
            "stored as soon as the database is back; send the message again with the same "
            "request_id to get it (without one, it would be answered twice)",
            retry_after=1.0,
        )

    async def _settle(self, run: TurnRun, answer: Message, usage: Usage | None) -> None:
        until = time.monotonic() + self._background
        backoff = FIRST_BACKOFF
        while time.monotonic() < until:
            closing = await self._wait_or_close(backoff)
            if await self._attempt(run, answer, usage, until - time.monotonic()) is None:
                log.info("stored a turn's answer once the database was back")
                return
            if closing:
                break
            backoff = min(backoff * 2, MAX_BACKOFF)
        log.error("gave up storing a turn's answer: the database stayed away")

    async def _wait_or_close(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self._closing.wait()
        except TimeoutError:
            return False
        return True

    async def _attempt(
        self, run: TurnRun, answer: Message, usage: Usage | None, limit: float | None
    ) -> Exception | None:
        try:
            # Within what is left of the window, even if the database's own bound is longer.
            async with asyncio.timeout(None if limit is None else max(limit, 0.05)):
                await self._store.finish(run.user_id, run.session_id, run.turn_id, answer, usage)
        except (DatabaseUnavailable, TimeoutError) as exc:
            return exc
        return None
