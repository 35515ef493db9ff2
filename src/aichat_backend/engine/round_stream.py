"""One model call of a turn: a producer task reads the provider while the relay drains.

The producer appends text to a buffer and wakes the relay; the relay sends whatever has
piled up as one delta. So a fast provider and a slow client cost one event per client
write, not one per token, and the provider is never held back by the client. While the
event loop is saturated (``LoopLoad.busy``) the producer wakes the relay at most once per
``busy_flush`` seconds: deltas are coalesced on purpose, not only when a client is slow.

Reasoning (``ReasoningChunk``) is relayed the same way, as deltas of its own, always
ahead of text that came after it. For a model that never reasons that costs one test of
an empty list per delta (no event, no allocation, no wake-up more).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aichat_backend.engine.events import Heartbeat, ReasoningDelta, TextDelta
from aichat_backend.engine.loop_load import LoopLoad
from aichat_backend.errors import AichatError, Internal
from aichat_backend.providers.base import (
    ProviderRequest,
    ReasoningBlock,
    ReasoningChunk,
    StreamFinished,
    TextChunk,
    ToolCallRequest,
    ToolCallsReady,
)
from aichat_backend.providers.retry import RetryPolicy, StreamTarget, open_stream_with_retry
from aichat_backend.reasons import Reason

log = logging.getLogger(__name__)

RoundEvent = TextDelta | ReasoningDelta | Heartbeat


class RoundStream:
    __slots__ = (
        "_beat_due",
        "_busy_flush",
        "_flush",
        "_heartbeat",
        "_last_sent",
        "_load",
        "_loop",
        "_relay",
        "_started",
        "_task",
        "_timer",
        "_waiter",
        "answered_by",
        "done",
        "error",
        "fallback_errors",
        "finished",
        "first_token_at",
        "pending",
        "reasoning_parts",
        "reasoning_pending",
        "stopped",
        "text_parts",
        "tool_calls",
    )

    def __init__(
        self,
        request: ProviderRequest,
        targets: Sequence[StreamTarget],
        policy: RetryPolicy,
        heartbeat: float,
        started: float,
        load: LoopLoad | None = None,
        busy_flush: float = 0.0,
        relay_text: bool = True,
    ) -> None:
        self.pending: list[str] = []
        self.text_parts: list[str] = []
        self.reasoning_pending: list[str] = []
        self.reasoning_parts: list[str] = []  # the reasoning relayed so far
        self.done = False
        self.stopped = False
        self.error: AichatError | None = None
        self.finished: StreamFinished | None = None
        self.tool_calls: tuple[ToolCallRequest, ...] = ()
        self.first_token_at: float | None = None
        # The catalogue name of the model that answered (a fallback, maybe), once known,
        # and the failures of the models tried before it.
        self.answered_by = ""
        self.fallback_errors: list[AichatError] = []
        self._loop = asyncio.get_running_loop()
        # The relay sleeps on a bare future only while nothing is pending; the producer
        # wakes it. Text arriving while the relay is busy just piles up (no wake-up).
        self._waiter: asyncio.Future[None] | None = None
        # One heartbeat timer per round, moved only when it fires: a timeout around each
        # wait would add and cancel a timer for every token.
        self._heartbeat = heartbeat
        self._started = started  # time.monotonic() of the request, for Heartbeat.elapsed
        self._beat_due = False
        self._last_sent = self._loop.time()
        self._timer: asyncio.TimerHandle | None = self._loop.call_at(
            self._last_sent + heartbeat, self._beat
        )
        self._load = load
        self._busy_flush = busy_flush
        self._flush: asyncio.TimerHandle | None = None  # the coalesced wake-up, when set
        # Off: the text piles up until the model call ends, then goes out as one delta
        # (a unary caller reads nothing before; waking it per token was most of the
        # engine's work per token).
        self._relay = relay_text
        # The upstream request leaves now, before anything else of the turn happens.
        self._task = asyncio.create_task(self._produce(request, targets, policy))

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def reasoning(self) -> tuple[ReasoningBlock, ...]:
        """The round's reasoning to keep with its answer: the provider's blocks as they
        came (signed), or, for a round cut short, the text relayed so far as one unsigned
        block (shown, never sent back: only signed blocks are)."""
        if self.finished is not None and self.finished.reasoning:
            return self.finished.reasoning
        if self.reasoning_parts:
            return (ReasoningBlock(family="", text="".join(self.reasoning_parts)),)
        return ()

    def cancel(self) -> None:
        """Close the upstream stream now (the SDK stream is left via ``async with``)."""
        self._task.cancel()
        self._stop_beating()

    def stop(self) -> None:
        """End the relay early (shutdown); the caller decides what the turn says."""
        self.stopped = True
        self._wake()

    async def next_event(self) -> RoundEvent | None:
        """Text as it comes (joined when the reader is slower), a heartbeat when quiet;
        None once the model call is over (or stopped)."""
        if not (
            self.pending or self.reasoning_pending or self.done or self.stopped or self._beat_due
        ):
            self._waiter = waiter = self._loop.create_future()
            await waiter
            self._waiter = None
        if self.reasoning_pending:  # it came before any text that is pending now
            chunk = "".join(self.reasoning_pending)
            self.reasoning_pending.clear()
            self.reasoning_parts.append(chunk)
            self._last_sent = self._loop.time()
            self._beat_due = False  # reasoning says the turn is alive too
            return ReasoningDelta(chunk)
        if self.pending:
            chunk = "".join(self.pending)
            self.pending.clear()
            self.text_parts.append(chunk)
            self._last_sent = self._loop.time()
            self._beat_due = False  # text says the turn is alive
            return TextDelta(chunk)
        if self.stopped or self.done:
            self._stop_beating()
            return None
        self._beat_due = False
        self._last_sent = self._loop.time()
        return Heartbeat(time.monotonic() - self._started)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _text_arrived(self) -> None:
        if not self._relay:
            return
        load = self._load
        if load is None or not load.busy or not self.text_parts:
            self._wake()  # the first text never waits: time to first token comes first
            return
        self._coalesce()

    def _reasoning_arrived(self) -> None:
        if not self._relay:
            return
        load = self._load
        if load is None or not load.busy or not self.reasoning_parts:
            self._wake()
            return
        self._coalesce()

    def _coalesce(self) -> None:
        """Wake the relay at most once per ``busy_flush`` while the loop is saturated."""
        if self._waiter is None or self._flush is not None:
            return  # the relay is writing (it takes the text after) or will be woken
        due = self._last_sent + self._busy_flush
        if due <= self._loop.time():
            self._wake()
        else:
            self._flush = self._loop.call_at(due, self._flushed)

    def _flushed(self) -> None:
        self._flush = None
        self._wake()

    def _beat(self) -> None:
        """The heartbeat timer: due when nothing was sent for a whole period."""
        now = self._loop.time()
        if now - self._last_sent >= self._heartbeat:
            self._beat_due = True
            self._wake()
            next_at = now + self._heartbeat
        else:
            next_at = self._last_sent + self._heartbeat
        self._timer = self._loop.call_at(next_at, self._beat)

    def _stop_beating(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None

    async def _produce(
        self, request: ProviderRequest, targets: Sequence[StreamTarget], policy: RetryPolicy
    ) -> None:
        try:
            opened = open_stream_with_retry(
                request,
                targets,
                policy=policy,
                on_fallback=lambda _target, error: self.fallback_errors.append(error),
            )
            async with opened as events:
                assert opened.answered_by is not None
                self.answered_by = opened.answered_by.label
                async for event in events:
                    if isinstance(event, TextChunk):
                        if event.text:
                            if self.first_token_at is None:
                                self.first_token_at = time.monotonic()
                            self.pending.append(event.text)
                            self._text_arrived()
                    elif isinstance(event, ReasoningChunk):
                        if event.text:
                            self.reasoning_pending.append(event.text)
                            self._reasoning_arrived()
                    elif isinstance(event, ToolCallsReady):
                        self.tool_calls = event.calls
                    elif isinstance(event, StreamFinished):
                        self.finished = event
        except AichatError as exc:
            self.error = exc
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("provider stream failed unexpectedly")
            self.error = Internal(
                "the model call failed unexpectedly", reason=Reason.PROVIDER_FAILED
            )
        finally:
            self.done = True
            self._wake()
