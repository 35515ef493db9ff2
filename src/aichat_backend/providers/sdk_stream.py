"""An SDK's open response stream and the provider events read from it, as one ``async with``.

Both adapters open a streamed completion the same way: send the request (translating the
SDK's errors), enter the SDK stream (whose exit closes the HTTP response), and read our
events from it. Leaving, for any reason (cancellation included), closes the events and
then hangs up on the upstream at once. A class rather than a generator-based context
manager: every running model call keeps one alive, and this is a fraction of the size.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from aichat_backend.providers.base import ProviderEvent, ProviderRequest


class SdkStream(Protocol):
    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any: ...


S = TypeVar("S", bound=SdkStream)


class SdkEvents(Generic[S]):
    __slots__ = ("_events", "_open", "_read", "_request", "_sdk")

    def __init__(
        self,
        open_stream: Callable[[ProviderRequest], Awaitable[S]],
        request: ProviderRequest,
        read: Callable[[S], AsyncGenerator[ProviderEvent, None]],
    ) -> None:
        self._open = open_stream  # sends the request; raises the service's own errors
        self._request = request
        self._read = read  # the SDK's chunks as provider events
        self._sdk: S | None = None
        self._events: AsyncGenerator[ProviderEvent, None] | None = None

    async def __aenter__(self) -> AsyncGenerator[ProviderEvent, None]:
        sdk = await self._open(self._request)
        await sdk.__aenter__()
        self._sdk = sdk
        self._events = self._read(sdk)
        return self._events

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        events, self._events = self._events, None
        sdk, self._sdk = self._sdk, None
        try:
            if events is not None:
                await events.aclose()
        finally:
            if sdk is not None:
                await sdk.__aexit__(kind, exc, tb)
