"""Per-user limits around chat turns: budget before, a concurrency slot during, usage after."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, aclosing

from aichat_backend.engine import events as ev
from aichat_backend.errors import ResourceExhausted
from aichat_backend.limits.base import Limiter

OnRefused = Callable[[str], None]


class TurnLimits:
    def __init__(self, limiter: Limiter, on_refused: OnRefused | None = None) -> None:
        self._limiter = limiter
        self._on_refused = on_refused

    async def check_rate(self, user_id: str) -> None:
        """The interceptor's gate: one request from the user's bucket."""
        try:
            await self._limiter.check_rate(user_id)
        except ResourceExhausted as exc:
            self._refused(exc)
            raise

    def turn(self, user_id: str) -> _Turn:
        """The budget checked and a concurrency slot held, for the ``async with`` body."""
        return _Turn(self, user_id)

    async def count(self, user_id: str, ended: ev.TurnEnded) -> None:
        """The tokens a finished turn reported, against the user's budget."""
        used = ended.input_tokens + ended.output_tokens
        if used:
            await self._limiter.add_usage(user_id, used)

    async def guard(
        self, user_id: str, events: AsyncGenerator[ev.TurnEvent, None]
    ) -> AsyncGenerator[ev.TurnEvent, None]:
        """A turn's events inside the limits; its reported usage counts against the budget."""
        async with self.turn(user_id), aclosing(events):
            async for event in events:
                if isinstance(event, ev.TurnEnded):
                    await self.count(user_id, event)
                yield event

    def _refused(self, exc: ResourceExhausted) -> None:
        if self._on_refused is not None:
            self._on_refused(exc.reason)


class _Turn:
    """A class, not a generator-based context manager: every held stream keeps one."""

    __slots__ = ("_limits", "_slot", "_user")

    def __init__(self, limits: TurnLimits, user_id: str) -> None:
        self._limits = limits
        self._user = user_id
        self._slot: AbstractAsyncContextManager[None] | None = None

    async def __aenter__(self) -> None:
        limiter = self._limits._limiter
        try:
            await limiter.check_budget(self._user)
            slot = limiter.turn_slot(self._user)
            await slot.__aenter__()
        except ResourceExhausted as exc:
            self._limits._refused(exc)
            raise
        self._slot = slot

    async def __aexit__(self, *exc: object) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            await slot.__aexit__(None, None, None)
