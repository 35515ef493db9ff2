"""The four refusals every limiter raises, worded once so all backends say the same thing.

Each is ``ResourceExhausted`` with the ErrorInfo reason clients switch on, ``retry_after``
seconds for RetryInfo, and string metadata (ErrorInfo metadata is a string map).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

# The day's one owner is aichat_backend.days; re-exported for the limiters that name it here.
from aichat_backend.days import SECONDS_PER_DAY as SECONDS_PER_DAY
from aichat_backend.days import utc_day as utc_day
from aichat_backend.errors import ResourceExhausted
from aichat_backend.limits.base import LimitSettings
from aichat_backend.money import from_nanos
from aichat_backend.reasons import Reason

RATE_LIMITED = Reason.RATE_LIMITED
CONCURRENCY_LIMITED = Reason.CONCURRENCY_LIMITED
TOKEN_BUDGET_EXHAUSTED = Reason.TOKEN_BUDGET_EXHAUSTED
COST_BUDGET_EXHAUSTED = Reason.COST_BUDGET_EXHAUSTED

# A turn slot frees when some turn ends, which nobody can predict: suggest a short wait.
CONCURRENCY_RETRY_AFTER = 1.0


def next_utc_midnight(wall_seconds: float) -> datetime:
    day = datetime.fromtimestamp(wall_seconds, UTC).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return day + timedelta(days=1)


def seconds_until_utc_midnight(wall_seconds: float) -> float:
    return max(0.0, next_utc_midnight(wall_seconds).timestamp() - wall_seconds)


def rate_limited(rate_rps: float, burst: int, retry_after: float) -> ResourceExhausted:
    # Round up to the millisecond: a client that waits exactly this long finds a token.
    wait = max(0.001, math.ceil(retry_after * 1000) / 1000)
    return ResourceExhausted(
        f"Too many requests: at most {rate_rps:g} per second per user, in bursts of up to "
        f"{burst}. Retry in {wait:g} s.",
        reason=RATE_LIMITED,
        retry_after=wait,
        metadata={"limit": f"{rate_rps:g}/s", "burst": str(burst)},
    )


def concurrency_limited(max_turns: int) -> ResourceExhausted:
    plural = "turn" if max_turns == 1 else "turns"
    return ResourceExhausted(
        f"Too many chat turns at once: at most {max_turns} running {plural} per user. "
        "Retry when one has finished.",
        reason=CONCURRENCY_LIMITED,
        retry_after=CONCURRENCY_RETRY_AFTER,
        metadata={"limit": str(max_turns)},
    )


def budget_exhausted(budget: int, used: int, wall_seconds: float) -> ResourceExhausted:
    resets = next_utc_midnight(wall_seconds)
    return ResourceExhausted(
        f"Daily token budget used up: {used} of {budget} tokens today. It resets at "
        f"{resets:%H:%M} UTC.",
        reason=TOKEN_BUDGET_EXHAUSTED,
        retry_after=max(1, math.ceil(seconds_until_utc_midnight(wall_seconds))),
        metadata={
            "limit": str(budget),
            "used": str(used),
            "resets_at": resets.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )


def cost_budget_exhausted(
    budget_nanos: int, used_nanos: int, currency: str, wall_seconds: float
) -> ResourceExhausted:
    resets = next_utc_midnight(wall_seconds)
    budget, used = from_nanos(budget_nanos).normalize(), from_nanos(used_nanos).normalize()
    return ResourceExhausted(
        f"Daily cost budget used up: {used:f} of {budget:f} {currency} today. It resets at "
        f"{resets:%H:%M} UTC.",
        reason=COST_BUDGET_EXHAUSTED,
        retry_after=max(1, math.ceil(seconds_until_utc_midnight(wall_seconds))),
        metadata={
            "limit": f"{budget:f}",
            "used": f"{used:f}",
            "currency": currency,
            "resets_at": resets.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )


def check_budgets(settings: LimitSettings, used: tuple[int, int], wall_seconds: float) -> None:
    """Refuse when today's tokens or today's cost (``used``: tokens, nanos) reached its
    budget (a budget of 0 is off)."""
    tokens, nanos = used
    if 0 < settings.daily_token_budget <= tokens:
        raise budget_exhausted(settings.daily_token_budget, tokens, wall_seconds)
    if 0 < settings.daily_cost_budget_nanos <= nanos:
        raise cost_budget_exhausted(
            settings.daily_cost_budget_nanos, nanos, settings.currency, wall_seconds
        )
