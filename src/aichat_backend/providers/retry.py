"""Retry and fallback, only while nothing has reached the caller yet.

Before the first event a failed attempt is invisible to the caller, so it is retried
(transient errors, with backoff) and then handed to the model's fallbacks. After the
first event a retry would repeat text the caller has already seen: errors propagate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType

from aichat_backend.errors import (
    AichatError,
    Cancelled,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from aichat_backend.providers.base import ChatProvider, ProviderEvent, ProviderRequest
from aichat_backend.providers.errors import stream_interrupted
from aichat_backend.reasons import Reason


@dataclass(frozen=True)
class StreamTarget:
    """One model to try: the catalogue name, its upstream model id and its provider."""

    label: str
    model: str
    # Resolved on first use, so a fallback that is not configured fails (and is
    # skipped) only when reached. May raise an AichatError.
    resolve: Callable[[], ChatProvider]
    temperature: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # per target, first try included
    base_delay: float = 0.2  # seconds; doubles per attempt
    max_delay: float = 2.0
    # A provider's retry-after is honoured up to this; past it, waiting costs the
    # caller more than trying the fallback.
    max_retry_after: float = 5.0


Sleep = Callable[[float], Awaitable[None]]
OnRetry = Callable[[StreamTarget, int, AichatError, float], None]
# A target that failed for good, with the next one about to be tried.
OnFallback = Callable[[StreamTarget, AichatError], None]
# A provider's stream, entered: left by the caller when the events are done with.
Opened = AbstractAsyncContextManager[AsyncIterator[ProviderEvent]]


def is_transient(error: AichatError) -> bool:
    """Worth another try at the same target after a pause."""
    if isinstance(error, Unavailable):
        return True
    return isinstance(error, ResourceExhausted) and error.reason == Reason.PROVIDER_RATE_LIMITED


def tries_fallback(error: AichatError) -> bool:
    """Worth trying the next model: anything but the input itself being refused."""
    return not isinstance(error, InvalidArgument | Cancelled)


def backoff_delay(
    attempt: int, error: AichatError, policy: RetryPolicy, rand: Callable[[], float]
) -> float:
    """Exponential backoff with jitter (half fixed, half random), at least retry_after."""
    ceiling = min(policy.max_delay, policy.base_delay * 2.0**attempt)
    delay = ceiling / 2 + rand() * ceiling / 2
    if error.retry_after:
        delay = max(delay, min(error.retry_after, policy.max_retry_after))
    return delay


def open_stream_with_retry(
    request: ProviderRequest,
    targets: Sequence[StreamTarget],
    *,
    policy: RetryPolicy | None = None,
    sleep: Sleep = asyncio.sleep,
    rand: Callable[[], float] = random.random,
    on_retry: OnRetry | None = None,
    on_fallback: OnFallback | None = None,
) -> OpenStream:
    """Like ``provider.stream(request)``, over ``targets`` (a model, then its fallbacks).

    Each target gets ``request`` with its own ``model`` (and its ``temperature`` when the
    request sets none). The stream is open and its first event received when the
    ``async with`` body starts, and ``OpenStream.answered_by`` is the target that
    answered; if every target fails first, the last error is raised.
    """
    plan = _Plan(request, targets, policy or RetryPolicy(), sleep, rand, on_retry, on_fallback)
    return OpenStream(plan)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to open and how to retry it (the arguments of ``open_stream_with_retry``)."""

    request: ProviderRequest
    targets: Sequence[StreamTarget]
    policy: RetryPolicy
    sleep: Sleep
    rand: Callable[[], float]
    on_retry: OnRetry | None
    on_fallback: OnFallback | None = None


class OpenStream:
    """The ``async with`` of ``open_stream_with_retry``: a class rather than a
    generator-based context manager with an exit stack, as every running model call
    keeps one alive."""

    __slots__ = ("_opened", "_plan", "answered_by")

    def __init__(self, plan: _Plan) -> None:
        self._plan = plan
        self._opened: Opened | None = None
        self.answered_by: StreamTarget | None = None  # once entered

    async def __aenter__(self) -> AsyncIterator[ProviderEvent]:
        target, opened, first, rest = await _first_event(self._plan)
        self._opened = opened
        self.answered_by = target
        return _Prepended(first, rest)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        opened, self._opened = self._opened, None
        if opened is None:
            return None
        return await opened.__aexit__(kind, exc, tb)


class _Prepended:
    """``first``, then the events of ``rest``. A class, not a generator re-yielding each
    event: every event of a stream would pass through one more generator layer."""

    __slots__ = ("_first", "_rest")

    def __init__(self, first: ProviderEvent, rest: AsyncIterator[ProviderEvent]) -> None:
        self._first: ProviderEvent | None = first
        self._rest = rest

    def __aiter__(self) -> _Prepended:
        return self

    def __anext__(self) -> Awaitable[ProviderEvent]:
        first = self._first
        if first is None:
            return self._rest.__anext__()
        self._first = None
        return _ready(first)


async def _ready(event: ProviderEvent) -> ProviderEvent:
    return event


async def _first_event(
    plan: _Plan,
) -> tuple[StreamTarget, Opened, ProviderEvent, AsyncIterator[ProviderEvent]]:
    reported: AichatError | None = None  # raised if every target fails
    for i, target in enumerate(plan.targets):
        try:
            return (target, *await _first_event_from(plan, target))
        except AichatError as exc:
            exc.metadata.setdefault("model", target.label)
            if not tries_fallback(exc):
                raise
            if plan.on_fallback is not None and i + 1 < len(plan.targets):
                plan.on_fallback(target, exc)
            # A fallback nobody configured says less about the failure than the error
            # that sent us to it.
            if reported is None or exc.reason != Reason.PROVIDER_NOT_CONFIGURED:
                reported = exc
    if reported is None:
        raise ValueError("no stream targets")
    raise reported


async def _first_event_from(
    plan: _Plan, target: StreamTarget
) -> tuple[Opened, ProviderEvent, AsyncIterator[ProviderEvent]]:
    """Open ``target`` and read its first event, retrying transient failures."""
    attempt = 0
    while True:
        opened: Opened | None = None  # set once entered: only then is there an exit
        try:
            provider = target.resolve()
            stream = provider.stream(_request_for(plan.request, target))
            iterator = aiter(await stream.__aenter__())
            opened = stream
            try:
                first = await anext(iterator)
            except StopAsyncIteration:
                raise stream_interrupted(provider.name) from None
            return opened, first, iterator
        except BaseException as exc:
            error = exc
            if opened is not None:
                try:
                    await opened.__aexit__(type(exc), exc, exc.__traceback__)
                except AichatError as stalled:  # the stream's own stall watch stopped it
                    error = stalled
            if not isinstance(error, AichatError):
                raise
            attempt += 1
            if not is_transient(error) or attempt >= plan.policy.attempts:
                raise error from error.__cause__
            delay = backoff_delay(attempt - 1, error, plan.policy, plan.rand)
            if plan.on_retry is not None:
                plan.on_retry(target, attempt, error, delay)
        await plan.sleep(delay)


def _request_for(request: ProviderRequest, target: StreamTarget) -> ProviderRequest:
    temperature = request.temperature if request.temperature is not None else target.temperature
    return dataclasses.replace(request, model=target.model, temperature=temperature)
