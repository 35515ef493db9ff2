"""Keeps the leases of running turns alive: one timer for every turn, not a task per turn.

A turn's claim on its session expires ``lease_seconds`` after it was made or last renewed
(so a crashed replica's turns are swept). Running turns renew theirs well before that.
A task per turn (sleeping, then cancelled when the turn ends) cost each turn a task
creation and cancellation and each held stream ~2 KiB; one timer that fires every third
of a lease and renews whichever leases are due costs nothing per turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aichat_backend.engine.turn_store import TurnStore
from aichat_backend.errors import AichatError

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)  # identity-hashed: leases live in a set
class Lease:
    user_id: str
    session_id: str
    turn_id: str
    renewed: float  # time.monotonic() of the claim or its last renewal


class LeaseKeeper:
    def __init__(
        self, store: TurnStore, lease_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._lease = lease_seconds
        self._every = lease_seconds / 3
        self._clock = clock
        self._held: set[Lease] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._renewing: asyncio.Task[None] | None = None

    @property
    def held(self) -> int:
        return len(self._held)

    def hold(self, user_id: str, session_id: str, turn_id: str) -> Lease:
        """Keep renewing this turn's lease (just claimed) until ``drop``."""
        lease = Lease(user_id, session_id, turn_id, self._clock())
        self._held.add(lease)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._every, self._tick)
        return lease

    def drop(self, lease: Lease) -> None:
        self._held.discard(lease)

    async def close(self) -> None:
        """Stop the timer and let a renewal in flight finish (shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._renewing is not None:
            await asyncio.gather(self._renewing, return_exceptions=True)

    def _tick(self) -> None:
        self._timer = None
        if not self._held:
            return  # the next hold arms the timer again
        now = self._clock()
        # Due at half a period old: renewed at most 1.5 periods (half a lease) after the
        # last renewal, leaving half a lease for the write itself.
        due = [lease for lease in self._held if now - lease.renewed >= self._every / 2]
        if due and (self._renewing is None or self._renewing.done()):
            self._renewing = asyncio.create_task(self._renew(due))
        self._timer = asyncio.get_running_loop().call_later(self._every, self._tick)

    async def _renew(self, due: list[Lease]) -> None:
        for lease in due:
            if lease not in self._held:
                continue  # the turn ended meanwhile; its release freed the session
            try:
                await self._store.renew_lease(
                    lease.user_id, lease.session_id, lease.turn_id, self._lease
                )
                lease.renewed = self._clock()
            except AichatError:
                log.warning("could not renew the turn's lease; trying again next period")
