"""Shared limits while Redis answers, per-process limits while it does not.

Refusing all traffic because the limit store is down would turn a Redis outage into a
full outage; running without limits would let one user starve the rest. So when a Redis
call fails the request is judged by a ``LocalLimiter`` instead, one warning is logged for
the whole outage, ``degraded()`` says why, and a background task pings Redis with a
growing back-off until it answers; then shared limits resume and recovery is logged.

For the daily budgets the fallback starts from the last totals read from Redis, and the
tokens and cost counted during the outage are replayed into Redis on recovery, so the
budgets still see them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from aichat_backend.limits import refusals
from aichat_backend.limits.local import LocalLimiter
from aichat_backend.limits.redis_limits import LimitStoreUnavailable, RedisLimiter

log = logging.getLogger(__name__)


class ResilientLimiter:
    def __init__(
        self,
        shared: RedisLimiter,
        local: LocalLimiter,
        *,
        probe_backoff: float = 1.0,
        max_probe_backoff: float = 10.0,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shared = shared
        self.local = local
        self._probe_backoff = probe_backoff
        self._max_probe_backoff = max(probe_backoff, max_probe_backoff)
        self._wall = wall
        self._monotonic = monotonic
        self._reason: str | None = None
        self._down_since = 0.0
        self._prober: asyncio.Task[None] | None = None
        # (UTC day, user) -> [tokens, cost nanos] counted locally while Redis was away.
        self._unsynced: dict[tuple[str, str], list[int]] = {}
        # One replay at a time: probe() and the prober would each send the same tokens.
        self._replaying = asyncio.Lock()
        # Set while shared limits are in force; tests and health checks may wait on it.
        self.shared_in_force = asyncio.Event()
        self.shared_in_force.set()

    # --- state -------------------------------------------------------------------------

    def degraded(self) -> str | None:
        return self._reason

    def _mark_down(self, exc: LimitStoreUnavailable) -> None:
        if self._reason is None:
            self._reason = (
                f"redis limits unavailable ({exc.cause_type}); per-process limits in force"
            )
            self._down_since = self._monotonic()
            self.shared_in_force.clear()
            log.warning(
                "redis unreachable: falling back to per-process limits",
                extra={"error": exc.cause_type},
            )
        if self._prober is None or self._prober.done():
            self._prober = asyncio.create_task(self._probe_until_back())

    def _mark_up(self) -> None:
        if self._reason is None:
            return
        outage = self._monotonic() - self._down_since
        self._reason = None
        self.shared_in_force.set()
        log.info(
            "redis reachable again: shared limits restored",
            extra={"outage_seconds": round(outage, 3)},
        )
        prober = self._prober
        if prober is not None and prober is not asyncio.current_task():
            prober.cancel()
        self._prober = None

    async def probe(self) -> bool:
        """Ask Redis now; True (and shared limits back in force) if it answered."""
        try:
            await self.shared.ping()
            await self._replay_unsynced()
        except LimitStoreUnavailable as exc:
            self._mark_down(exc)
            return False
        self._mark_up()
        return True

    async def _probe_until_back(self) -> None:
        delay = self._probe_backoff
        while self._reason is not None:
            await asyncio.sleep(delay)
            try:
                await self.shared.ping()
                await self._replay_unsynced()
            except Exception as exc:  # the top of a background task: it must not die
                # (a dead prober would leave the process on local limits for good)
                if not isinstance(exc, LimitStoreUnavailable):
                    log.exception("redis probe failed unexpectedly")
                delay = min(delay * 2, self._max_probe_backoff)
                continue
            self._mark_up()

    async def _replay_unsynced(self) -> None:
        async with self._replaying:
            while self._unsynced:
                (day, user), counted = next(iter(self._unsynced.items()))
                tokens, nanos = counted
                await self.shared.add_usage_on(user, tokens, day, nanos)
                # Only forget it once Redis has it: a failure mid-replay keeps the rest (and
                # what was counted meanwhile).
                counted[0] -= tokens
                counted[1] -= nanos
                if counted == [0, 0]:
                    del self._unsynced[(day, user)]

    # --- limits ------------------------------------------------------------------------

    async def check_rate(self, user_id: str) -> None:
        if self._reason is None:
            try:
                await self.shared.check_rate(user_id)
                return
            except LimitStoreUnavailable as exc:
                self._mark_down(exc)
        self.local.take_token(user_id)

    @asynccontextmanager
    async def turn_slot(self, user_id: str) -> AsyncIterator[None]:
        # The slot is given back to the backend that granted it, whatever happens to
        # Redis in between: each backend's context manager owns its own release.
        async with AsyncExitStack() as stack:
            taken = False
            if self._reason is None:
                try:
                    await stack.enter_async_context(self.shared.turn_slot(user_id))
                    taken = True
                except LimitStoreUnavailable as exc:
                    self._mark_down(exc)
            if not taken:
                await stack.enter_async_context(self.local.turn_slot(user_id))
            yield

    async def check_budget(self, user_id: str) -> None:
        settings = self.local.settings
        if not settings.budgets_apply(user_id):
            return
        if self._reason is None:
            try:
                used = await self.shared.usage_today(user_id)
            except LimitStoreUnavailable as exc:
                self._mark_down(exc)
            else:
                # Remembered locally: if Redis goes away, the fallback starts from here
                # instead of handing every user a fresh budget.
                self.local.remember_usage(user_id, *used)
                refusals.check_budgets(settings, used, self._wall())
                return
        await self.local.check_budget(user_id)

    async def add_usage(self, user_id: str, tokens: int, cost_nanos: int = 0) -> None:
        if self._reason is None:
            try:
                await self.shared.add_usage(user_id, tokens, cost_nanos)
                return
            except LimitStoreUnavailable as exc:
                self._mark_down(exc)
        settings = self.local.settings
        if (tokens <= 0 and cost_nanos <= 0) or not settings.budgets_apply(user_id):
            return
        self.local.count_usage(user_id, tokens, cost_nanos)
        counted = self._unsynced.setdefault((refusals.utc_day(self._wall()), user_id), [0, 0])
        counted[0] += max(tokens, 0)
        counted[1] += max(cost_nanos, 0)

    async def aclose(self) -> None:
        prober, self._prober = self._prober, None
        if prober is not None:
            prober.cancel()
            await asyncio.wait([prober])  # its CancelledError stays inside; ours would not
        await self.shared.aclose()
        await self.local.aclose()
