"""One model call of a turn: a producer task reads the provider while the relay drains.

The producer appends text to a buffer and wakes the relay; the relay sends whatever has
piled up as one delta. So a fast provider and a slow client cost one event per client
write, not one per token, and the provider is never held back by the client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Sequence

from aichat_backend.engine.events import Heartbeat, TextDelta
from aichat_backend.errors import AichatError, Internal
from aichat_backend.providers.base import (
    ProviderRequest,
    StreamFinished,
    TextChunk,
    ToolCallRequest,
    ToolCallsReady,
)
from aichat_backend.providers.retry import RetryPolicy, StreamTarget, open_stream_with_retry

log = logging.getLogger(__name__)


class RoundStream:
    def __init__(
        self, request: ProviderRequest, targets: Sequence[StreamTarget], policy: RetryPolicy
    ) -> None:
        self.pending: list[str] = []
        self.text_parts: list[str] = []
        self.ready = asyncio.Event()
        self.done = False
        self.stopped = False
        self.error: AichatError | None = None
        self.finished: StreamFinished | None = None
        self.tool_calls: tuple[ToolCallRequest, ...] = ()
        self.first_token_at: float | None = None
        # The upstream request leaves now, before anything else of the turn happens.
        self._task = asyncio.create_task(self._produce(request, targets, policy))

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def cancel(self) -> None:
        """Close the upstream stream now (the SDK stream is left via ``async with``)."""
        self._task.cancel()

    def stop(self) -> None:
        """End the relay early (shutdown); the caller decides what the turn says."""
        self.stopped = True
        self.ready.set()

    async def _produce(
        self, request: ProviderRequest, targets: Sequence[StreamTarget], policy: RetryPolicy
    ) -> None:
        try:
            async with open_stream_with_retry(request, targets, policy=policy) as events:
                async for event in events:
                    if isinstance(event, TextChunk):
                        if event.text:
                            if self.first_token_at is None:
                                self.first_token_at = time.monotonic()
                            self.pending.append(event.text)
                            self.ready.set()
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
            self.error = Internal("the model call failed unexpectedly", reason="PROVIDER_FAILED")
        finally:
            self.done = True
            self.ready.set()

    async def relay(
        self, heartbeat: float, started: float
    ) -> AsyncGenerator[TextDelta | Heartbeat, None]:
        """Text as it comes (joined when the reader is slower), heartbeats when quiet."""
        while True:
            if not self.pending and not self.done and not self.stopped:
                try:
                    async with asyncio.timeout(heartbeat):
                        await self.ready.wait()
                except TimeoutError:
                    yield Heartbeat(time.monotonic() - started)
                    continue
            self.ready.clear()
            if self.pending:
                chunk = "".join(self.pending)
                self.pending.clear()
                self.text_parts.append(chunk)
                yield TextDelta(chunk)
                continue
            if self.stopped or self.done:
                return
