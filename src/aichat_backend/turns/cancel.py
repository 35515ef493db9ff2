"""CancelTurn: find the turn (its owner's only) and stop it where it runs.

A turn running in this process is stopped here at once (``ChatEngine.cancel_turn``);
one running on another replica is named in a PostgreSQL NOTIFY that every replica
listens for (``fanout.PgListener``), so the replica running it stops it as soon as the
notification lands. SQLite is one process: its turns are always here. Idempotent: a
turn that has ended already is left as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aichat_backend.domain import now_us
from aichat_backend.errors import FailedPrecondition
from aichat_backend.reasons import Reason
from aichat_backend.store import turn_events_repo as repo
from aichat_backend.store.database import Database
from aichat_backend.turns.fanout import Watches
from aichat_backend.turns.log import TurnEventLog
from aichat_backend.turns.reader import turn_not_found


class TurnCancels:
    def __init__(
        self,
        db: Database,
        log: TurnEventLog,
        watches: Watches,
        is_detached: Callable[[str], bool],
        flush_seconds: float,
    ) -> None:
        self._db = db
        self._log = log
        self._is_detached = is_detached
        self._flush_seconds = flush_seconds
        self._stop: Callable[[str], bool] = lambda _turn_id: False
        watches.on_cancel = self.stop_here

    def bind(self, stop: Callable[[str], bool]) -> None:
        """What stops a turn running in this process (the engine, made after us)."""
        self._stop = stop

    def stop_here(self, turn_id: str) -> bool:
        """Stop ``turn_id`` if it is a detached turn running in this process."""
        if not self._is_detached(turn_id):
            return False
        buf = self._log.get(turn_id)
        if buf is not None and not buf.ended:
            buf.cancelled = True  # its last event says who stopped it
        return self._stop(turn_id)

    async def cancel(self, user_id: str, session_id: str, turn_id: str, name: str) -> None:
        buf = self._log.get(turn_id)
        if buf is not None:  # running here (or its end not stored yet)
            if buf.user_id != user_id or buf.session_id != session_id:
                raise turn_not_found(name)
            if buf.ended or self.stop_here(turn_id):
                return
            if not self._is_detached(turn_id):
                raise FailedPrecondition(
                    f"{name} is attached to its caller's stream: hanging up cancels it",
                    reason=Reason.TURN_NOT_DETACHED,
                    metadata={"resource": name},
                )
            return  # detached and ending on its own
        state = await self._state(user_id, session_id, turn_id)
        if state is None:
            # A turn that just ended elsewhere may have freed its session before its last
            # event was stored (one flush period): look once more before saying no.
            await asyncio.sleep(self._flush_seconds * 2)
            state = await self._state(user_id, session_id, turn_id)
        if state is None:
            raise turn_not_found(name)
        if state == "running" and not self.stop_here(turn_id):
            async with self._db.statement() as tx:
                await repo.notify_cancel(tx, turn_id)

    async def _state(self, user_id: str, session_id: str, turn_id: str) -> str | None:
        async with self._db.read() as tx:
            return await repo.turn_state(tx, user_id, session_id, turn_id, now_us())
