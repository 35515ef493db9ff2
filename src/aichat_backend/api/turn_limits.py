"""Per-user limits around chat turns: budget before, a concurrency slot during, usage after."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager

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

    @asynccontextmanager
    async def turn(self, user_id: str) -> AsyncIterator[None]:
        try:
            await self._limiter.check_budget(user_id)
            slot = self._limiter.turn_slot(user_id)
            await slot.__aenter__()
        except ResourceExhausted as exc:
            self._refused(exc)
            raise
        try:
            yield
        finally:
            await slot.__aexit__(None, None, None)

    async def guard(
        self, user_id: str, events: AsyncGenerator[ev.TurnEvent, None]
    ) -> AsyncGenerator[ev.TurnEvent, None]:
        """A turn's events inside the limits; its reported usage counts against the budget."""
        async with self.turn(user_id), aclosing(events):
            async for event in events:
                if isinstance(event, ev.TurnEnded):
                    used = event.input_tokens + event.output_tokens
                    if used:
                        await self._limiter.add_usage(user_id, used)
                yield event

    def _refused(self, exc: ResourceExhausted) -> None:
        if self._on_refused is not None:
            self._on_refused(exc.reason)
