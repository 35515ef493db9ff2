"""A turn's stream: numbered, named and logged; detached turns; resuming a turn.

``TurnRecorder`` numbers each engine event (its ``sequence`` in the turn), names it
with the turn and hands it to the event log: the turn's own stream pays a counter, a
string field and a list append per event. A detached turn is run by a task of its own
(inside the user's limits and a time limit) and its caller reads the log like any
other reader, so hanging up only stops the reading.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

from aichat.v1 import chat_service_pb2 as cpb

from aichat_backend import names
from aichat_backend.api.turn_events import frame_of, kind_of
from aichat_backend.api.turn_frames import error_from_status, render
from aichat_backend.api.turn_limits import NO_LIMITS, TurnGate
from aichat_backend.engine import events as ev
from aichat_backend.errors import AichatError, InvalidArgument
from aichat_backend.reasons import Reason
from aichat_backend.request_context import current_user
from aichat_backend.turns.cancel import TurnCancels
from aichat_backend.turns.log import Reader, TurnBuffer, TurnEventLog
from aichat_backend.turns.reader import TurnReader

log = logging.getLogger(__name__)

LAST_EVENT_ID = "last-event-id"


class TurnRecorder:
    __slots__ = ("_buf", "_log", "_send_ahead", "_session", "_user", "seq", "turn_id")

    def __init__(
        self, log_: TurnEventLog, user: str, session: str, turn_id: str, send_ahead: bool = True
    ) -> None:
        self._log = log_
        self._user = user
        self._session = session  # "sessions/{s}" as requested (validated by the engine)
        self.turn_id = turn_id
        self._send_ahead = send_ahead
        self._buf: TurnBuffer | None = None
        self.seq = 0

    def open(self) -> TurnBuffer:
        if self._buf is None:
            session_id = names.parse_session(self._session, "session")
            name = names.turn(session_id, self.turn_id)
            self._buf = self._log.open(
                self.turn_id, self._user, session_id, name, send_ahead=self._send_ahead
            )
        return self._buf

    @property
    def seq_limit(self) -> int:
        """Events numbered up to this may be sent now."""
        return self._buf.sendable if self._buf is not None else 0

    async def sendable(self, out: cpb.StreamChatResponse) -> cpb.StreamChatResponse:
        """``out`` once it may be sent (its log stored a limit past it)."""
        buf = self._buf or self.open()
        await buf.until_sendable(out.sequence)
        return out

    def record(self, event: ev.TurnEvent) -> cpb.StreamChatResponse:
        buf = self._buf or self.open()
        self.seq += 1
        kind = kind_of(event)  # the event's row in the one table of event kinds
        out = cpb.StreamChatResponse(sequence=self.seq, turn=buf.name)
        kind.fill(event, out)
        if isinstance(event, ev.TurnStarted):
            buf.answer_id = names.parse_message(event.answer_name).message_id
        self._log.append(buf, frame_of(kind, out))
        return out

    def failed(self, exc: BaseException) -> None:
        """What broke the turn, for the last event the log writes for it."""
        if self._buf is not None:
            self._buf.error = exc


class DetachedTurns:
    """Turns that outlive their callers, each run by a task of its own."""

    def __init__(
        self,
        log_: TurnEventLog,
        limits: TurnGate | None,
        max_seconds: float,
        reader: TurnReader | None = None,
    ) -> None:
        self._log = log_
        self._limits: TurnGate = limits if limits is not None else NO_LIMITS
        self.max_seconds = max_seconds
        self._reader = reader  # a duplicate of a running turn's request reads that turn
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: set[str] = set()  # the turn ids of the tasks (CancelTurn asks)

    def deadline(self) -> float:
        """The turn's own deadline (``time.monotonic()``), whatever the caller's."""
        return time.monotonic() + self.max_seconds

    def run(
        self, events: AsyncGenerator[ev.TurnEvent, None], recorder: TurnRecorder, user: str
    ) -> AsyncIterator[cpb.StreamChatResponse]:
        buf = recorder.open()
        reader, _ = buf.reader()  # before the first event: the caller misses none
        task = asyncio.create_task(self._pump(events, recorder, buf, user))
        self._tasks.add(task)
        self._running.add(recorder.turn_id)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._running.discard(recorder.turn_id))
        return self._read(buf, reader, user)

    def runs(self, turn_id: str) -> bool:
        """Whether ``turn_id`` is a detached turn running in this process."""
        return turn_id in self._running

    async def _pump(
        self,
        events: AsyncGenerator[ev.TurnEvent, None],
        recorder: TurnRecorder,
        buf: TurnBuffer,
        user: str,
    ) -> None:
        try:
            async with (
                self._limits.turn(user) as slot,
                asyncio.timeout(self.max_seconds),
                aclosing(events),
            ):
                async for event in events:
                    if isinstance(event, ev.TurnEnded):
                        await slot.count(event)
                    recorder.record(event)
        except TimeoutError:
            buf.deadline_hit = True  # the engine stores the partial answer; the log says so
        except Exception as exc:
            recorder.failed(exc)
            if buf.next_seq == 1:  # refused before it began: the caller gets the error
                self._log.discard(buf)
                for r in buf.readers:
                    r.fail(exc)
        except asyncio.CancelledError:
            raise

    async def _read(
        self, buf: TurnBuffer, reader: Reader, user: str
    ) -> AsyncIterator[cpb.StreamChatResponse]:
        joined = ""
        try:
            while True:
                await reader.wait()
                if reader.error is not None and not reader.frames:
                    joined = joined_turn(reader.error) if self._reader is not None else ""
                    if not joined:
                        raise reader.error
                    break
                frames, reader.frames = reader.frames, []
                for f in frames:
                    if f.seq > buf.sendable:
                        await buf.until_sendable(f.seq)
                    out = render(f, buf.name)
                    yield out
                    if f.final:
                        _raise_if_failed(out)
                        return
        finally:
            buf.drop(reader)
        if joined and self._reader is not None:
            async for out in join(self._reader, user, joined):
                yield out

    async def close(self) -> None:
        """Wait for the turns still running (shutdown stopped them already)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


@dataclass(slots=True)
class TurnStreams:
    """What ChatService needs for turns' streams: the log, its readers, detached turns."""

    log: TurnEventLog
    reader: TurnReader
    detached: DetachedTurns
    cancels: TurnCancels
    detached_default: bool = False

    def recorder(self, session: str, *, send_ahead: bool = True) -> TurnRecorder:
        """A new turn's recorder; ``send_ahead`` False for a turn whose first answer does
        not carry its id (ResolveToolCalls): nothing of it is sent before its log row is
        stored, so a crash recovery always finds it."""
        return TurnRecorder(self.log, current_user(), session, uuid.uuid4().hex, send_ahead)

    def detach(self, requested: bool | None) -> bool:
        return self.detached_default if requested is None else requested


def _raise_if_failed(out: cpb.StreamChatResponse) -> None:
    ended = out.turn_ended
    if ended.outcome == cpb.TURN_OUTCOME_FAILED and ended.HasField("error"):
        # gRPC clients see a failed turn as the RPC's status, as on the turn's own stream.
        raise error_from_status(ended.error)


def after_seq(request: cpb.StreamTurnEventsRequest, metadata: tuple[tuple[str, str], ...]) -> int:
    """``after_seq``, or the ``Last-Event-ID`` header a browser's reader may send."""
    after = request.after_seq
    if after == 0:
        header = next((v for k, v in metadata if k == LAST_EVENT_ID), "")
        if header:
            try:
                after = int(header)
            except ValueError:
                raise InvalidArgument(
                    "Last-Event-ID must be an event's sequence number",
                    reason=Reason.INVALID_SEQUENCE,
                    field="after_seq",
                ) from None
    if after < 0:
        raise InvalidArgument(
            "after_seq must be 0 or an event's sequence number",
            reason=Reason.INVALID_SEQUENCE,
            field="after_seq",
        )
    return after


def joined_turn(exc: BaseException) -> str:
    """The running turn a duplicate of its request (the same request_id) is to read, as
    "sessions/{s}/turns/{t}"; "" when ``exc`` is no such refusal."""
    if isinstance(exc, AichatError) and exc.reason is Reason.TURN_IN_PROGRESS:
        return exc.metadata.get("turn", "")
    return ""


def join(reader: TurnReader, user: str, turn: str) -> AsyncIterator[cpb.StreamChatResponse]:
    """A duplicate's stream: the first turn's own events from the start, as it makes them."""
    return resume(reader, user, cpb.StreamTurnEventsRequest(name=turn), 0)


async def resume(
    reader: TurnReader, user: str, request: cpb.StreamTurnEventsRequest, after: int
) -> AsyncIterator[cpb.StreamChatResponse]:
    """StreamTurnEvents: the turn's events after ``after``, ending with its last one."""
    turn = names.parse_turn(request.name, "name")
    name = names.turn(turn.session_id, turn.turn_id)
    frames = reader.frames_after(user, turn.session_id, turn.turn_id, name, after)
    async with aclosing(frames):  # type: ignore[type-var]
        async for f in frames:
            out = render(f, name)
            yield out
            if f.final:
                _raise_if_failed(out)
                return
