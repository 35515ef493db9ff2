"""An SDK's open response stream and the provider events read from it, as one ``async with``.

Both adapters open a streamed completion the same way: send the request (translating the
SDK's errors), enter the SDK stream (whose exit closes the HTTP response), and read our
events from it. Leaving, for any reason (cancellation included), closes the events and
then hangs up on the upstream at once. A class rather than a generator-based context
manager: every running model call keeps one alive, and this is a fraction of the size.

A silent upstream is caught here too, not by the HTTP client's read timeout: aiohttp moves
a timer on every socket read (a cancel and a new ``call_later`` for each chunk), which was
~9% of the service's CPU with 300 streams held (py-spy). Streams are sent without a read
timeout; a ``StallWatch`` instead looks at each stream a few times per timeout period and
ends one that received nothing for a whole period, with the error the SDK's timeout gave.
Measured with 250 paced streams, runs alternated: 62-65 µs of CPU per token against 66-71
with the read timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import httpx2

from aichat_backend.providers.base import ProviderEvent, ProviderRequest
from aichat_backend.providers.errors import provider_timeout

CHECKS_PER_PERIOD = 4  # a stall is noticed between 1 and 1.25 periods of silence
DEFAULT_STALL_SECONDS = 600.0  # the SDKs' own default read timeout


def stall_seconds(sdk_timeout: Any) -> float:
    """The read timeout an SDK client was built with (seconds, or an httpx ``Timeout``)."""
    if isinstance(sdk_timeout, int | float):
        return float(sdk_timeout)
    read = getattr(sdk_timeout, "read", None)
    return float(read) if read else DEFAULT_STALL_SECONDS


def without_read_timeout(stall: float) -> Any:
    """The per-request timeout for a stream: the SDK's, less the read timeout (see above)."""
    return httpx2.Timeout(stall, read=None)


class SdkStream(Protocol):
    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any: ...

    def __aiter__(self) -> AsyncIterator[Any]: ...


S = TypeVar("S", bound=SdkStream)


class SdkEvents(Generic[S]):
    __slots__ = (
        "_chunks",
        "_events",
        "_open",
        "_provider",
        "_read",
        "_request",
        "_sdk",
        "_stall",
        "_watch",
    )

    def __init__(
        self,
        open_stream: Callable[[ProviderRequest], Awaitable[S]],
        request: ProviderRequest,
        read: Callable[[AsyncIterator[Any]], AsyncGenerator[ProviderEvent, None]],
        provider: str,
        stall_timeout: float,
        chunks: Callable[[S], AsyncIterator[Any]] = aiter,
    ) -> None:
        self._open = open_stream  # sends the request; raises the service's own errors
        self._request = request
        self._chunks = chunks  # what is read from the open SDK stream
        self._read = read  # those chunks as provider events
        self._provider = provider
        self._stall = stall_timeout
        self._sdk: S | None = None
        self._events: AsyncGenerator[ProviderEvent, None] | None = None
        self._watch: StallWatch | None = None

    async def __aenter__(self) -> AsyncGenerator[ProviderEvent, None]:
        try:
            async with asyncio.timeout(self._stall):  # until the response's headers
                sdk = await self._open(self._request)
        except TimeoutError:
            raise provider_timeout(self._provider) from None
        await sdk.__aenter__()
        self._sdk = sdk
        self._watch = watch = StallWatch(self._stall, self._chunks(sdk))
        self._events = events = self._read(watch)
        await watch.start()  # last: once started, only __aexit__ stops it
        return events

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        events, self._events = self._events, None
        sdk, self._sdk = self._sdk, None
        watch, self._watch = self._watch, None
        try:
            if events is not None:
                await events.aclose()
        finally:
            try:
                if sdk is not None:
                    await sdk.__aexit__(kind, exc, tb)
            finally:
                if watch is not None and await watch.stop(kind, exc, tb):
                    # The cancellation that ended the stream was the watch's own.
                    raise provider_timeout(self._provider) from exc


class StallWatch:
    """The SDK's chunks, counted; the task reading them is stopped when none came for
    ``timeout`` seconds. One timer per stream, moved ``CHECKS_PER_PERIOD`` times a period,
    whatever the number of chunks; the cancellation is an ``asyncio.Timeout``'s, so it is
    told apart from any other (the client leaving) exactly as ``asyncio.timeout`` does."""

    __slots__ = ("_chunks", "_every", "_inner", "_last_seen", "_quiet_since", "_timeout", "_timer")

    def __init__(self, timeout: float, chunks: AsyncIterator[Any]) -> None:
        self._inner = chunks
        self._every = timeout / CHECKS_PER_PERIOD
        self._chunks = 0
        self._last_seen = 0
        self._quiet_since = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timeout = asyncio.timeout(None)  # expires only when a check says so

    def __aiter__(self) -> StallWatch:
        return self

    def __anext__(self) -> Awaitable[Any]:
        self._chunks += 1  # the next one asked for: the last one has come
        return self._inner.__anext__()

    async def start(self) -> None:
        await self._timeout.__aenter__()
        loop = asyncio.get_running_loop()
        self._quiet_since = loop.time()
        self._timer = loop.call_later(self._every, self._check)

    async def stop(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        """Leave the watch; True if it stopped the stream (the stream stalled)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        close = getattr(self._inner, "aclose", None)
        try:
            if close is not None:  # now, rather than by the collector
                await close()
        finally:
            stalled = await self._left(kind, exc, tb)
        return stalled

    async def _left(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        try:
            await self._timeout.__aexit__(kind, exc, tb)
        except TimeoutError:
            return True
        return False

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._chunks != self._last_seen:
            self._last_seen = self._chunks
            self._quiet_since = now
        elif now - self._quiet_since >= self._every * CHECKS_PER_PERIOD:
            self._timer = None
            self._timeout.reschedule(now)  # cancels the reading task, as a timeout
            return
        self._timer = loop.call_later(self._every, self._check)
