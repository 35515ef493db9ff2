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
from typing import NamedTuple

from aichat_backend.domain import Message, now_us
from aichat_backend.engine.observer import TurnObserver
from aichat_backend.errors import DatabaseUnavailable
from aichat_backend.store import turn_events_repo as repo
from aichat_backend.store.database import Database
from aichat_backend.turns.buffer import SEND_AHEAD, Reader, TurnBuffer
from aichat_backend.turns.frames import END, Frame, encode

log = logging.getLogger(__name__)

# Renders the last event of a turn the engine cut off (its caller left, its deadline
# passed, an error): (buffer, the answer as the engine stored it, "cancelled"/"error").
EndRenderer = Callable[[TurnBuffer, Message, str], Frame]
# A turn's last event made to fit in this many bytes (what its log may still store).
EndShrinker = Callable[[Frame, int], Frame]

# Of a turn's bound, what its other events leave for its last one (which is always kept).
END_RESERVE = 4096

__all__ = ["EndRenderer", "EndShrinker", "Reader", "TurnBuffer", "TurnEventLog"]


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
        self.end_shrinker: EndShrinker | None = None
        self.flushes = 0  # for measurements: flush transactions so far

    # --- the producer side -----------------------------------------------------------

    def open(
        self, turn_id: str, user_id: str, session_id: str, name: str, *, send_ahead: bool = True
    ) -> TurnBuffer:
        """A turn's log. Without ``send_ahead`` nothing of it is given to readers before its
        first flush has stored its row (a turn whose first answer does not carry the turn's
        id, which a crash recovery could not find otherwise)."""
        buf = TurnBuffer(turn_id, user_id, session_id, name, send_ahead=send_ahead)
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
        elif buf.turn_id not in self._dirty and (frame.seq > 1 or frame.seq > buf.sendable):
            # A turn's first event alone waits: nothing is written before its first token
            # but the turn's own begin (a reader elsewhere finds it by its session claim,
            # a crash recovery by its answer). Unless it may not be sent before it is stored.
            self._dirty[buf.turn_id] = buf
            if frame.seq > buf.sendable:
                self._urgent.set()
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

    def round_started(self, turn_id: str, answer_id: str) -> None:
        """The engine's hook: the turn's next round writes ``answer_id`` (stored with the
        log at the next flush, so a crash's partial text goes to the round it belongs to)."""
        buf = self._turns.get(turn_id)
        if buf is None or buf.ended:
            return
        buf.answer_id = answer_id
        self._dirty[turn_id] = buf
        self._wake.set()

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
        taken: list[_Taken] = []
        now = now_us()
        for buf in work:
            frames = list(buf.pending)
            kept, cut, size = self._within_bound(buf, frames)
            batches.extend(_batches(buf.turn_id, kept))
            last = frames[-1].seq if frames else buf.next_seq - 1
            limit = last + SEND_AHEAD
            logs.append(
                repo.LogRow(
                    turn_id=buf.turn_id,
                    user_id=buf.user_id,
                    session_id=buf.session_id,
                    replica_id=self._replica,
                    answer_id=buf.answer_id,
                    last_seq=last,
                    seq_limit=limit,
                    cut_from=cut,
                    stored_bytes=buf.stored_bytes + size,
                    ended=buf.ended and (not frames or frames[-1].final),
                    create_time_us=buf.create_time_us,
                    update_time_us=now,
                )
            )
            taken.append(_Taken(buf, len(frames), size, cut, limit))
        try:
            async with self._db.transaction() as tx:
                await repo.store(tx, logs, batches)
        except DatabaseUnavailable:
            log.warning("could not store turn events: the database is unavailable")
            for t in taken:
                self._dirty[t.buf.turn_id] = t.buf
            return False
        except Exception as exc:
            # One turn's rows refused (say its session was deleted meanwhile) must not hold
            # back the others: each is stored on its own, and a refused one's frames are
            # dropped.
            log.warning("could not store turn events together: %s", type(exc).__name__)
            taken = await self._store_each(logs, batches, taken)
        self.flushes += 1
        for t in taken:
            buf = t.buf
            if t.frames:
                buf.flushed_seq = buf.pending[t.frames - 1].seq
                del buf.pending[: t.frames]
            buf.stored_bytes += t.size
            buf.cut_from = t.cut
            buf.raise_sendable(t.limit)
            if buf.ended and not buf.pending:
                self._turns.pop(buf.turn_id, None)
            elif buf.pending:
                self._dirty[buf.turn_id] = buf
                self._wake.set()
        return True

    def _within_bound(self, buf: TurnBuffer, frames: list[Frame]) -> tuple[list[Frame], int, int]:
        """The frames of this flush the turn's bound keeps, where it cut the log (the first
        event not kept, or 0), and their bytes. The log keeps events 1..n with no gap, and
        its last event whatever the bound (made to fit): past the bound nothing else is
        stored, so a resume that needs what was cut is refused, never given a gap."""
        cut, size = buf.cut_from, 0
        room = self._max_bytes - END_RESERVE - buf.stored_bytes
        kept: list[Frame] = []
        for f in frames:
            if f.final:
                fits = self._max_bytes - buf.stored_bytes - size
                if f.size() > fits and self.end_shrinker is not None:
                    f = self.end_shrinker(f, fits)
                kept.append(f)
                size += f.size()
            elif not cut and size + f.size() <= room:
                kept.append(f)
                size += f.size()
            elif not cut:
                cut = f.seq
        return kept, cut, size

    async def _store_each(
        self, logs: list[repo.LogRow], batches: list[repo.BatchRow], taken: list[_Taken]
    ) -> list[_Taken]:
        kept: list[_Taken] = []
        for row, item in zip(logs, taken, strict=True):
            mine = [b for b in batches if b.turn_id == row.turn_id]
            try:
                async with self._db.transaction() as tx:
                    await repo.store(tx, [row], mine)
                kept.append(item)
            except DatabaseUnavailable:
                self._dirty[row.turn_id] = item.buf
            except Exception as exc:
                log.error("dropping a turn's events the database refused: %s", type(exc).__name__)
                buf = item.buf
                buf.refused = True  # its log is gone (its session was deleted): readers say so
                del buf.pending[: item.frames]
                buf.raise_sendable(item.limit)  # nothing to wait for any more
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


class _Taken(NamedTuple):
    """What a flush took of one turn: its first ``frames`` pending frames (``size`` bytes
    stored of them), where its log is cut, and the sequence limit stored."""

    buf: TurnBuffer
    frames: int
    size: int
    cut: int
    limit: int


def _batches(turn_id: str, frames: list[Frame]) -> list[repo.BatchRow]:
    """Batch rows of consecutive frames (the last event after a cut is a batch of its own)."""
    rows: list[repo.BatchRow] = []
    start = 0
    for i in range(1, len(frames) + 1):
        if i == len(frames) or frames[i].seq != frames[i - 1].seq + 1:
            run = frames[start:i]
            rows.append(repo.BatchRow(turn_id, run[0].seq, run[-1].seq, run[-1].final, encode(run)))
            start = i
    return rows
