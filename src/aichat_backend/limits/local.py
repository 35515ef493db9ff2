"""Per-process limits: the default with one replica, and the fallback when Redis is down.

Everything happens on the event loop without an ``await`` between reading and writing a
counter, so no lock is needed. Memory stays bounded by the users seen recently: a bucket
that has refilled completely is indistinguishable from no bucket and is dropped, and the
token counters of past UTC days are dropped when the day changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aichat_backend.limits import refusals
from aichat_backend.limits.base import LimitSettings

Clock = Callable[[], float]


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class _TurnSlot:
    """One concurrent-turn slot, held for a turn (a class, not a generator-based context
    manager: every held stream keeps one alive, and this is a fifth of the size)."""

    __slots__ = ("_counted", "_limiter", "_user")

    def __init__(self, limiter: LocalLimiter, user_id: str) -> None:
        self._limiter = limiter
        self._user = user_id
        self._counted = False

    async def __aenter__(self) -> None:
        self._counted = self._limiter._take_turn(self._user)

    async def __aexit__(self, *exc: object) -> None:
        if self._counted:
            self._counted = False
            self._limiter._give_back_turn(self._user)


class LocalLimiter:
    """In-process token buckets, turn counters and daily token counters.

    ``monotonic`` times the buckets (never jumps with the wall clock); ``wall`` (Unix
    seconds) decides the UTC day. Both are injectable so tests need no sleeps.
    """

    def __init__(
        self,
        settings: LimitSettings,
        *,
        monotonic: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self.settings = settings
        self._monotonic = monotonic
        self._wall = wall
        self._burst = max(1, settings.rate_burst)
        # Seconds for an empty bucket to fill: after that an idle bucket can be forgotten.
        self._refill_seconds = self._burst / settings.rate_rps if settings.rate_rps > 0 else 0.0
        self._sweep_every = min(60.0, max(1.0, self._refill_seconds))
        self._last_sweep = monotonic()
        self._buckets: dict[str, _Bucket] = {}
        self._turns: dict[str, int] = {}
        self._day = ""
        self._usage: dict[str, int] = {}
        self._cost: dict[str, int] = {}  # nano units of the budget's currency

    # --- request rate ------------------------------------------------------------------

    async def check_rate(self, user_id: str) -> None:
        self.take_token(user_id)

    def take_token(self, user_id: str) -> None:
        """``check_rate`` without the coroutine: it never waits."""
        rps = self.settings.rate_rps
        if rps <= 0 or user_id in self.settings.exempt_users:
            return
        now = self._monotonic()
        if now - self._last_sweep >= self._sweep_every:
            self._sweep_buckets(now)
        bucket = self._buckets.get(user_id)
        if bucket is None:
            bucket = self._buckets[user_id] = _Bucket(float(self._burst), now)
        elif now > bucket.stamp:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.stamp) * rps)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        raise refusals.rate_limited(rps, self._burst, (1.0 - bucket.tokens) / rps)

    def _sweep_buckets(self, now: float) -> None:
        self._last_sweep = now
        full_since = now - self._refill_seconds
        idle = [user for user, b in self._buckets.items() if b.stamp <= full_since]
        for user in idle:
            del self._buckets[user]

    # --- concurrent turns --------------------------------------------------------------

    def turn_slot(self, user_id: str) -> _TurnSlot:
        return _TurnSlot(self, user_id)

    def _take_turn(self, user_id: str) -> bool:
        """Count one more turn for the user (False: not counted, no limit applies)."""
        limit = self.settings.max_concurrent_turns
        if limit <= 0 or user_id in self.settings.exempt_users:
            return False
        held = self._turns.get(user_id, 0)
        if held >= limit:
            raise refusals.concurrency_limited(limit)
        self._turns[user_id] = held + 1
        return True

    def _give_back_turn(self, user_id: str) -> None:
        left = self._turns.get(user_id, 1) - 1
        if left > 0:
            self._turns[user_id] = left
        else:
            self._turns.pop(user_id, None)

    def active_turns(self, user_id: str) -> int:
        """Turn slots the user holds in this process (for tests and health pages)."""
        return self._turns.get(user_id, 0)

    # --- daily budgets (tokens, money) -----------------------------------------------

    def _today(self) -> str:
        day = refusals.utc_day(self._wall())
        if day != self._day:
            # A new UTC day: yesterday's counters are dead weight.
            self._day = day
            self._usage = {}
            self._cost = {}
        return day

    async def check_budget(self, user_id: str) -> None:
        if not self.settings.budgets_apply(user_id):
            return
        self._today()
        refusals.check_budgets(self.settings, self._used(user_id), self._wall())

    async def add_usage(self, user_id: str, tokens: int, cost_nanos: int = 0) -> None:
        self.count_usage(user_id, tokens, cost_nanos)

    def count_usage(self, user_id: str, tokens: int, cost_nanos: int = 0) -> None:
        """``add_usage`` without the coroutine."""
        if (tokens <= 0 and cost_nanos <= 0) or not self.settings.budgets_apply(user_id):
            return
        self._today()
        if tokens > 0:
            self._usage[user_id] = self._usage.get(user_id, 0) + tokens
        if cost_nanos > 0:
            self._cost[user_id] = self._cost.get(user_id, 0) + cost_nanos

    def remember_usage(self, user_id: str, used: int, cost_nanos: int = 0) -> None:
        """Raise today's counts to totals learnt elsewhere (the shared store), so a
        fallback to this limiter does not hand out fresh budgets."""
        self._today()
        if used > self._usage.get(user_id, 0):
            self._usage[user_id] = used
        if cost_nanos > self._cost.get(user_id, 0):
            self._cost[user_id] = cost_nanos

    def used_today(self, user_id: str) -> int:
        self._today()
        return self._usage.get(user_id, 0)

    def cost_today(self, user_id: str) -> int:
        """Nano units of the budget's currency counted today."""
        self._today()
        return self._cost.get(user_id, 0)

    def _used(self, user_id: str) -> tuple[int, int]:
        return self._usage.get(user_id, 0), self._cost.get(user_id, 0)

    # --- housekeeping ------------------------------------------------------------------

    def degraded(self) -> str | None:
        return None  # per-process limits are what was configured, not a fallback

    def tracked_users(self) -> int:
        """How many per-user entries are held in memory (for tests of the bound)."""
        return len(self._buckets) + len(self._turns) + len(self._usage) + len(self._cost)

    async def aclose(self) -> None:
        return None
