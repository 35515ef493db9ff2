"""The event log of running turns: frames in memory until a flush stores them.

Appending a frame costs a list append (and a wake-up for each local reader, if any):
no I/O on a turn's path. One flusher task stores every turn's new frames together,
``flush_seconds`` after the first unstored one (at once for a turn's last event), in
one transaction, so the database sees a few statements per tick whatever the number of
turns. What a crash can lose is what was not stored yet: at most one tick of events.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable

from aichat_backend.domain import Message, now_us
from aichat_backend.engine.observer import TurnObserver
from aichat_backend.errors import DatabaseUnavailable
from aichat_backend.store import turn_events_repo as repo
from aichat_backend.store.database import Database
from aichat_backend.turns.buffer import Reader, TurnBuffer
from aichat_backend.turns.frames import END, Frame, encode

log = logging.getLogger(__name__)

# Renders the last event of a turn the engine cut off (its caller left, its deadline
# passed, an error): (buffer, the answer as the engine stored it, "cancelled"/"error").
EndRenderer = Callable[[TurnBuffer, Message, str], Frame]

__all__ = ["EndRenderer", "Reader", "TurnBuffer", "TurnEventLog"]


class TurnEventLog(TurnObserver):
    def __init__(
        self,
        db: Database,
        replica_id: str,
        *,
        flush_seconds: float = 0.1,
        max_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self._db = db
        self._replica = replica_id
        self._flush_seconds = flush_seconds
        self._max_bytes = max_bytes
        self._turns: dict[str, TurnBuffer] = {}
        self._dirty: dict[str, TurnBuffer] = {}
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.end_renderer: EndRenderer | None = None
        self.flushes = 0  # for measurements: flush transactions so far

    # --- the producer side -----------------------------------------------------------

    def open(self, turn_id: str, user_id: str, session_id: str, name: str) -> TurnBuffer:
        buf = TurnBuffer(turn_id, user_id, session_id, name)
        self._turns[turn_id] = buf
        return buf

    def append(self, buf: TurnBuffer, frame: Frame) -> None:
        """Add the next frame (its ``seq`` is ``buf.next_seq``)."""
        if buf.ended:
            return
        buf.next_seq = frame.seq + 1
        buf.pending.append(frame)
        for r in buf.readers:
            r.push(frame)
        if frame.kind == END:
            buf.ended = True
            self._dirty[buf.turn_id] = buf
            self._urgent.set()
            self._wake.set()
        elif buf.turn_id not in self._dirty and frame.seq > 1:
            # A turn's first event alone waits: nothing is written before its first token
            # but the turn's own begin (a reader elsewhere finds it by its session claim).
            self._dirty[buf.turn_id] = buf
            self._wake.set()
        if self._task is None and not self._closed:
            # A context of its own: the flusher belongs to no request.
            self._task = asyncio.get_running_loop().create_task(
                self._run(), context=contextvars.Context()
            )

    def discard(self, buf: TurnBuffer) -> None:
        """Forget a turn that never made an event (refused before it began)."""
        if buf.next_seq == 1:
            self._turns.pop(buf.turn_id, None)

    def get(self, turn_id: str) -> TurnBuffer | None:
        return self._turns.get(turn_id)

    def turn_cut_off(self, turn_id: str, message: Message, reason: str) -> None:
        """The engine's hook: a turn ended without its last event (stored by now)."""
        buf = self._turns.get(turn_id)
        if buf is None or buf.ended or self.end_renderer is None:
            return
        try:
            self.append(buf, self.end_renderer(buf, message, reason))
        except Exception:  # a hook must never raise into the engine
            log.exception("could not log the end of a cut-off turn")

    # --- the flusher -----------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closed:
            await self._wake.wait()
            if not self._urgent.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), self._flush_seconds)
            self._wake.clear()
            self._urgent.clear()
            if not await self.flush():
                # The database is away: try again after a tick, keeping every frame.
                await asyncio.sleep(self._flush_seconds)
                self._wake.set()

    async def flush(self) -> bool:
        """Store every turn's unstored frames; False if the database refused."""
        if not self._dirty:
            return True
        work = list(self._dirty.values())
        self._dirty.clear()
        logs: list[repo.LogRow] = []
        batches: list[repo.BatchRow] = []
        taken: list[tuple[TurnBuffer, int, int]] = []
        now = now_us()
        for buf in work:
            frames = list(buf.pending)
            if not frames:
                continue
            size = sum(f.size() for f in frames)
            if buf.stored_bytes + size > self._max_bytes:
                # Past the per-turn bound only the last event is kept; a resume that needs
                # what was left out is refused (TURN_LOG_TRUNCATED) rather than given a gap.
                frames = [f for f in frames if f.final]
                size = sum(f.size() for f in frames)
            if frames:
                batches.append(
                    repo.BatchRow(
                        buf.turn_id, frames[0].seq, frames[-1].seq, frames[-1].final, encode(frames)
                    )
                )
            last = buf.pending[-1].seq
            logs.append(
                repo.LogRow(
                    turn_id=buf.turn_id,
                    user_id=buf.user_id,
                    session_id=buf.session_id,
                    replica_id=self._replica,
                    answer_id=buf.answer_id,
                    last_seq=last,
                    stored_bytes=buf.stored_bytes + size,
                    ended=buf.ended and buf.pending[-1].final,
                    create_time_us=buf.create_time_us,
                    update_time_us=now,
                )
            )
            taken.append((buf, len(buf.pending), size))
        if not logs:
            return True
        try:
            async with self._db.transaction() as tx:
                await repo.store(tx, logs, batches)
        except DatabaseUnavailable:
            log.warning("could not store turn events: the database is unavailable")
            for buf, _, _ in taken:
                self._dirty[buf.turn_id] = buf
            return False
        except Exception as exc:
            # One turn's rows refused (say its log was ended by a crash sweep meanwhile)
            # must not hold back the others: each is stored on its own, and a refused
            # one's frames are dropped.
            log.warning("could not store turn events together: %s", type(exc).__name__)
            taken = await self._store_each(logs, batches, taken)
        self.flushes += 1
        for buf, n, size in taken:
            stored = buf.pending[:n]
            del buf.pending[:n]
            buf.flushed_seq = stored[-1].seq
            buf.stored_bytes += size
            if buf.ended and not buf.pending:
                self._turns.pop(buf.turn_id, None)
            elif buf.pending:
                self._dirty[buf.turn_id] = buf
                self._wake.set()
        return True

    async def _store_each(
        self,
        logs: list[repo.LogRow],
        batches: list[repo.BatchRow],
        taken: list[tuple[TurnBuffer, int, int]],
    ) -> list[tuple[TurnBuffer, int, int]]:
        kept: list[tuple[TurnBuffer, int, int]] = []
        for row, item in zip(logs, taken, strict=True):
            mine = [b for b in batches if b.turn_id == row.turn_id]
            try:
                async with self._db.transaction() as tx:
                    await repo.store(tx, [row], mine)
                kept.append(item)
            except DatabaseUnavailable:
                self._dirty[row.turn_id] = item[0]
            except Exception as exc:
                log.error("dropping a turn's events the database refused: %s", type(exc).__name__)
                buf = item[0]
                del buf.pending[: item[1]]
                if buf.ended:
                    self._turns.pop(buf.turn_id, None)
        return kept

    async def close(self) -> None:
        """Store what is left (shutdown), then stop the flusher."""
        self._closed = True
        if self._task is not None:
            # Not cancelled mid-flush (a commit whose answer was lost would be stored twice):
            # it finishes its round and sees it is closed.
            self._urgent.set()
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self._db.request_timeout * 2)
            except TimeoutError:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _ in range(3):
            if await self.flush():
                break
