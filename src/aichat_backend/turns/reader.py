"""Reading a turn after a sequence number: the stored past, then the live tail.

Subscribe first, then read the past, then drop what the past covered. For a turn
running in this process the subscription is its buffer's reader list (with the frames
not stored yet taken in the same instant); for one running elsewhere it is a ``Watch``
woken by the other replica's NOTIFY, after which the new rows are read. Either way a
frame is given once, in order, and a missing one is an error, never a silent gap; the
one exception is the last event a crash recovery wrote, numbered past every event the
dead producer may have sent. While it waits for a turn running elsewhere (or one whose
replica died and is not recovered yet) a reader sends a keep-alive every heartbeat
period, as a live turn does, so no proxy takes the stream for dead.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aichat_backend.domain import now_us
from aichat_backend.errors import FailedPrecondition, NotFound
from aichat_backend.reasons import Reason
from aichat_backend.store import turn_events_repo as repo
from aichat_backend.store.database import Database
from aichat_backend.turns.fanout import Watches
from aichat_backend.turns.frames import Frame, frames_after, keepalive
from aichat_backend.turns.log import TurnEventLog


class _Cursor:
    __slots__ = ("cut", "done", "last", "name")

    def __init__(self, after: int, name: str) -> None:
        self.last = after
        self.done = False
        self.name = name
        self.cut = 0  # where the log was cut at its size bound (0: not cut)

    def take(self, f: Frame) -> bool:
        """Whether ``f`` is the next frame to give (the last one always is, once)."""
        if self.done:
            return False
        if f.seq <= self.last:
            if f.final:  # asked for events past the end: just the last event
                self.done = True
                return True
            return False
        if f.seq != self.last + 1 and (self.cut or not f.final):
            raise FailedPrecondition(
                f"{self.name} kept no events {self.last + 1}..{f.seq - 1}: it outgrew "
                "the event log's per-turn bound; read its answer with ListMessages",
                reason=Reason.TURN_LOG_TRUNCATED,
                metadata={"resource": self.name},
            )
        # (A gap before the last event of a log that was not cut: a crash recovery
        # numbered it past every event its producer may have sent; those it did not
        # store are lost with the producer.)
        self.last = f.seq
        self.done = f.final
        return True


@dataclass(slots=True)
class TurnReader:
    db: Database
    log: TurnEventLog
    watches: Watches
    poll_seconds: float = 5.0
    # Reads of a turn with neither a log nor a claim before it is reported missing. With
    # other replicas (PostgreSQL) a turn may have ended before its first flush and be
    # storing its last event right now; in one process its buffer would have been found.
    missing_reads: int = 1
    # A keep-alive when nothing came for this long (a live turn's heartbeat period).
    heartbeat_seconds: float = 5.0

    async def frames_after(
        self, user_id: str, session_id: str, turn_id: str, name: str, after: int
    ) -> AsyncIterator[Frame]:
        cursor = _Cursor(after, name)
        buf = self.log.get(turn_id)
        if buf is not None:
            if buf.user_id != user_id or buf.session_id != session_id or buf.refused:
                raise turn_not_found(name)
            reader, unstored = buf.reader()
            try:
                cursor.cut = buf.cut_from
                first_unstored = unstored[0].seq if unstored else buf.next_seq
                if cursor.last + 1 < first_unstored:
                    async with self.db.read() as tx:
                        stored = await repo.read_after(tx, user_id, session_id, turn_id, after)
                    if stored is None and (buf.flushed_seq or buf.refused):
                        raise turn_not_found(name)  # its log is gone: its session was deleted
                    for f in frames_after(stored.batches, after) if stored is not None else ():
                        if cursor.take(f):
                            yield f
                for f in unstored:
                    if cursor.take(f):
                        if f.seq > buf.sendable:
                            await buf.until_sendable(f.seq)
                        yield f
                while not cursor.done:
                    await reader.wait()
                    frames, reader.frames = reader.frames, []
                    for f in frames:
                        if cursor.take(f):
                            if f.seq > buf.sendable:
                                await buf.until_sendable(f.seq)
                            yield f
            finally:
                buf.drop(reader)
            return
        async for f in self._elsewhere(cursor, user_id, session_id, turn_id, name):
            yield f

    async def _elsewhere(
        self, cursor: _Cursor, user_id: str, session_id: str, turn_id: str, name: str
    ) -> AsyncIterator[Frame]:
        """A turn running on another replica (or dead): its stored rows as they come."""
        watch = self.watches.watch(turn_id)
        try:
            missing = 0
            waiting_since, quiet_since = now_us(), time.monotonic()
            started_us = 0
            while not cursor.done:
                seen = cursor.last
                async with self.db.read() as tx:
                    stored = await repo.read_after(tx, user_id, session_id, turn_id, seen)
                    if stored is None and not await repo.is_claimed(
                        tx, user_id, session_id, turn_id
                    ):
                        missing += 1
                        if missing >= self.missing_reads:
                            raise turn_not_found(name)
                if stored is not None:
                    cursor.cut, started_us = stored.cut_from, stored.create_time_us
                for f in frames_after(stored.batches, seen) if stored is not None else ():
                    if cursor.take(f):
                        quiet_since = time.monotonic()
                        yield f
                if cursor.done:
                    break
                due = quiet_since + self.heartbeat_seconds - time.monotonic()
                if due <= 0.01:
                    quiet_since, due = time.monotonic(), self.heartbeat_seconds
                    yield keepalive(now_us() - (started_us or waiting_since))
                await watch.wait(min(self.poll_seconds, due) if missing == 0 else 0.2)
        finally:
            self.watches.unwatch(watch)


def turn_not_found(name: str) -> NotFound:
    """The same words whether the turn is missing or someone else's."""
    return NotFound(
        f"{name} was not found", reason=Reason.TURN_NOT_FOUND, metadata={"resource": name}
    )
