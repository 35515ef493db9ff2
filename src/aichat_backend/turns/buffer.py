"""A running turn's log in its producer's process, and a local reader's queue."""

from __future__ import annotations

import asyncio
import contextlib

from aichat_backend.domain import now_us
from aichat_backend.turns.frames import Frame


class Reader:
    """A local reader's queue of live frames."""

    __slots__ = ("_waiter", "closed", "error", "frames")

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.error: BaseException | None = None  # the turn was refused before it began

    def push(self, frame: Frame) -> None:
        self.frames.append(frame)
        self._wake()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until a frame is queued (or the turn failed)."""
        if self.frames or self.error is not None:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


# How far past what its last flush stored a turn may send events before the next flush
# commits (and before its first one: a turn's log row is not written before its first
# token). The flush stores this limit with the events; a crash's recovered last event is
# numbered past it, so no reader ever sees a number it saw before. Far more events than
# one flush period holds: a turn waits for a flush only when the database does.
SEND_AHEAD = 4096


class TurnBuffer:
    """One turn's log in this process (the producer's replica)."""

    __slots__ = (
        "_sendable_waiter",
        "answer_id",
        "cancelled",
        "create_time_us",
        "cut_from",
        "deadline_hit",
        "ended",
        "error",
        "flushed_seq",
        "name",
        "next_seq",
        "pending",
        "readers",
        "refused",
        "sendable",
        "session_id",
        "stored_bytes",
        "turn_id",
        "user_id",
    )

    def __init__(
        self, turn_id: str, user_id: str, session_id: str, name: str, *, send_ahead: bool = True
    ) -> None:
        self.turn_id = turn_id
        self.user_id = user_id
        self.session_id = session_id
        self.name = name  # "sessions/{s}/turns/{t}"
        self.answer_id = ""  # the answer the turn's current round writes
        self.next_seq = 1
        self.pending: list[Frame] = []  # not stored yet (in flight included)
        self.readers: list[Reader] = []
        self.ended = False
        self.flushed_seq = 0
        self.stored_bytes = 0
        self.cut_from = 0  # the first event not kept (past the size bound); 0: none
        self.create_time_us = now_us()
        self.error: BaseException | None = None  # what cut the turn off, if anything
        self.deadline_hit = False
        self.cancelled = False  # stopped by CancelTurn (its last event says so)
        self.refused = False  # the database refused its log (its session was deleted)
        # Events up to this number may be given to readers now. Without ``send_ahead`` (a
        # turn its recovery could not find without a log row) nothing is, until the first
        # flush has stored the row.
        self.sendable = SEND_AHEAD if send_ahead else 0
        self._sendable_waiter: asyncio.Future[None] | None = None

    def raise_sendable(self, limit: int) -> None:
        """A flush stored the log with this limit: events up to it may be sent."""
        if limit > self.sendable:
            self.sendable = limit
            waiter = self._sendable_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def until_sendable(self, seq: int) -> None:
        """Until event ``seq`` may be given to a reader (a flush stored a limit past it)."""
        while seq > self.sendable:
            if self._sendable_waiter is None or self._sendable_waiter.done():
                self._sendable_waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._sendable_waiter)

    def reader(self) -> tuple[Reader, list[Frame]]:
        """Subscribe; and the frames not stored yet, taken in the same instant."""
        r = Reader()
        self.readers.append(r)
        return r, list(self.pending)

    def drop(self, r: Reader) -> None:
        r.closed = True
        with contextlib.suppress(ValueError):
            self.readers.remove(r)
