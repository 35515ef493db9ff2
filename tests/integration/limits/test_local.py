"""Per-process limits with injected clocks: each limit, its reset, exemptions, memory."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from aichat_backend.errors import ResourceExhausted
from aichat_backend.limits.base import LimitSettings
from aichat_backend.limits.local import LocalLimiter
from tests.integration.limits.support import FakeClock

pytestmark = pytest.mark.timeout(5)

# 2026-03-10 23:59:00 UTC
LATE_EVENING = datetime(2026, 3, 10, 23, 59, 0, tzinfo=UTC).timestamp()


def limiter(**overrides: object) -> tuple[LocalLimiter, FakeClock, FakeClock]:
    mono, wall = FakeClock(), FakeClock(LATE_EVENING)
    settings = LimitSettings(**overrides)  # type: ignore[arg-type]
    return LocalLimiter(settings, monotonic=mono, wall=wall), mono, wall


async def test_rate_allows_a_burst_then_refuses_with_retry_after() -> None:
    lim, _, _ = limiter(rate_rps=2.0, rate_burst=3)
    for _ in range(3):
        await lim.check_rate("alice")
    with pytest.raises(ResourceExhausted) as refused:
        await lim.check_rate("alice")
    assert refused.value.reason == "RATE_LIMITED"
    assert refused.value.retry_after == pytest.approx(0.5)
    assert refused.value.metadata == {"limit": "2/s", "burst": "3"}
    # Another user has a bucket of their own.
    await lim.check_rate("bob")


async def test_rate_refills_at_the_configured_rate_and_never_past_the_burst() -> None:
    lim, mono, _ = limiter(rate_rps=2.0, rate_burst=3)
    for _ in range(3):
        await lim.check_rate("alice")
    mono.advance(0.49)
    with pytest.raises(ResourceExhausted) as refused:
        await lim.check_rate("alice")
    assert refused.value.retry_after == pytest.approx(0.01, abs=0.001)
    mono.advance(0.01)
    await lim.check_rate("alice")  # one token after half a second
    mono.advance(3600)  # a long idle time refills only up to the burst
    for _ in range(3):
        await lim.check_rate("alice")
    with pytest.raises(ResourceExhausted):
        await lim.check_rate("alice")


async def test_rate_zero_means_no_rate_limit() -> None:
    lim, _, _ = limiter(rate_rps=0.0, rate_burst=1)
    for _ in range(100):
        await lim.check_rate("alice")


async def test_concurrent_turns_are_capped_and_freed_when_a_turn_ends() -> None:
    lim, _, _ = limiter(max_concurrent_turns=2)
    async with lim.turn_slot("alice"), lim.turn_slot("alice"):
        assert lim.active_turns("alice") == 2
        with pytest.raises(ResourceExhausted) as refused:
            async with lim.turn_slot("alice"):
                pass
        assert refused.value.reason == "CONCURRENCY_LIMITED"
        assert refused.value.retry_after == 1.0
        assert refused.value.metadata == {"limit": "2"}
        async with lim.turn_slot("bob"):  # other users are not affected
            pass
    assert lim.active_turns("alice") == 0
    async with lim.turn_slot("alice"):
        pass


async def test_a_failed_or_cancelled_turn_gives_its_slot_back() -> None:
    lim, _, _ = limiter(max_concurrent_turns=1)
    with pytest.raises(RuntimeError):
        async with lim.turn_slot("alice"):
            raise RuntimeError("provider broke")
    assert lim.active_turns("alice") == 0

    entered = asyncio.Event()

    async def turn() -> None:
        async with lim.turn_slot("alice"):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(turn())
    await entered.wait()
    assert lim.active_turns("alice") == 1
    task.cancel()
    await asyncio.wait([task])
    assert lim.active_turns("alice") == 0


async def test_daily_budget_refuses_until_the_next_utc_day() -> None:
    lim, _, wall = limiter(daily_token_budget=100)
    await lim.add_usage("alice", 60)
    await lim.check_budget("alice")
    await lim.add_usage("alice", 40)
    with pytest.raises(ResourceExhausted) as refused:
        await lim.check_budget("alice")
    error = refused.value
    assert error.reason == "TOKEN_BUDGET_EXHAUSTED"
    assert error.retry_after == 60  # 23:59:00 → midnight
    assert error.metadata == {"limit": "100", "used": "100", "resets_at": "2026-03-11T00:00:00Z"}
    await lim.check_budget("bob")
    wall.advance(60)  # midnight UTC: a new day, a new budget
    await lim.check_budget("alice")
    assert lim.used_today("alice") == 0


async def test_budget_zero_means_unlimited_and_counts_nothing() -> None:
    lim, _, _ = limiter(daily_token_budget=0)
    await lim.add_usage("alice", 10**9)
    await lim.check_budget("alice")
    assert lim.tracked_users() == 0


async def test_exempt_users_bypass_every_limit() -> None:
    lim, _, _ = limiter(
        rate_rps=1.0,
        rate_burst=1,
        max_concurrent_turns=1,
        daily_token_budget=1,
        exempt_users=frozenset({"indexer"}),
    )
    for _ in range(10):
        await lim.check_rate("indexer")
    async with lim.turn_slot("indexer"), lim.turn_slot("indexer"):
        pass
    await lim.add_usage("indexer", 1000)
    await lim.check_budget("indexer")
    assert lim.tracked_users() == 0
    assert lim.degraded() is None


async def test_memory_is_bounded_by_recently_active_users() -> None:
    lim, mono, wall = limiter(rate_rps=10.0, rate_burst=5, daily_token_budget=1000)
    for n in range(2000):
        await lim.check_rate(f"user-{n}")
        await lim.add_usage(f"user-{n}", 1)
    assert lim.tracked_users() == 4000
    mono.advance(60)  # every bucket refilled: a full bucket is the same as none
    wall.advance(24 * 3600)  # and yesterday's token counts are history
    await lim.check_rate("late")
    await lim.add_usage("late", 1)
    assert lim.tracked_users() == 2


async def test_cost_budget_refuses_in_its_currency_until_the_next_utc_day() -> None:
    lim, _, wall = limiter(daily_cost_budget_nanos=2_500_000_000, currency="EUR")
    await lim.add_usage("alice", 10, 1_500_000_000)
    await lim.check_budget("alice")
    await lim.add_usage("alice", 10, 1_000_000_000)
    with pytest.raises(ResourceExhausted) as refused:
        await lim.check_budget("alice")
    error = refused.value
    assert error.reason == "COST_BUDGET_EXHAUSTED"
    assert error.retry_after == 60  # 23:59:00 → midnight
    assert error.metadata == {
        "limit": "2.5",
        "used": "2.5",
        "currency": "EUR",
        "resets_at": "2026-03-11T00:00:00Z",
    }
    assert "2.5 of 2.5 EUR" in error.message
    await lim.check_budget("bob")
    wall.advance(60)
    await lim.check_budget("alice")
    assert lim.cost_today("alice") == 0


async def test_token_and_cost_budgets_hold_apart() -> None:
    lim, _, _ = limiter(daily_token_budget=100, daily_cost_budget_nanos=1000)
    await lim.add_usage("alice", 100)  # tokens only (an unpriced model)
    await lim.add_usage("bob", 1, 1000)
    with pytest.raises(ResourceExhausted) as tokens:
        await lim.check_budget("alice")
    with pytest.raises(ResourceExhausted) as money:
        await lim.check_budget("bob")
    assert (tokens.value.reason, money.value.reason) == (
        "TOKEN_BUDGET_EXHAUSTED",
        "COST_BUDGET_EXHAUSTED",
    )
    assert money.value.metadata["used"] == "0.000001"  # exact, never 1e-06
