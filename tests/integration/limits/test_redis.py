"""Shared limits on the machine's real Redis: each limit, its reset, two replicas.

Time is never waited for: a reset is made by moving the stored state back (the bucket's
timestamp, a slot's expiry) or by injecting the wall clock that names the UTC day.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from aichat_backend.errors import ResourceExhausted
from aichat_backend.limits.base import LimitSettings
from aichat_backend.limits.redis_limits import USAGE_KEY_TTL_SECONDS
from tests.integration.limits.conftest import MakeRedisLimiter
from tests.integration.limits.support import FakeClock

pytestmark = pytest.mark.timeout(10)

NEVER_REFILLS = 0.0001  # tokens per second: nothing refills within a test


async def test_rate_bucket_refuses_past_the_burst_and_refills(
    make_redis_limiter: MakeRedisLimiter, rclient: aioredis.Redis, user: str
) -> None:
    lim = make_redis_limiter(LimitSettings(rate_rps=2.0, rate_burst=3))
    for _ in range(3):
        await lim.check_rate(user)
    with pytest.raises(ResourceExhausted) as refused:
        await lim.check_rate(user)
    assert refused.value.reason == "RATE_LIMITED"
    wait = refused.value.retry_after
    assert wait is not None and 0 < wait <= 0.5  # one token per half second
    assert refused.value.metadata == {"limit": "2/s", "burst": "3"}

    key = lim.rate_key(user)
    assert 0 < await rclient.pttl(key) <= 3000 + 1000  # an idle bucket goes away once full
    # Pretend the last request was ten seconds ago: the bucket is full again, not fuller.
    stamp = float(await rclient.hget(key, "ts"))  # type: ignore[arg-type]
    await rclient.hset(key, "ts", f"{stamp - 10:.6f}")
    for _ in range(3):
        await lim.check_rate(user)
    with pytest.raises(ResourceExhausted):
        await lim.check_rate(user)


async def test_two_replicas_share_one_bucket(
    make_redis_limiter: MakeRedisLimiter, user: str
) -> None:
    settings = LimitSettings(rate_rps=NEVER_REFILLS, rate_burst=10)
    a, b = make_redis_limiter(settings), make_redis_limiter(settings)

    async def attempt(limiter_index: int) -> bool:
        try:
            await (a, b)[limiter_index].check_rate(user)
            return True
        except ResourceExhausted:
            return False

    # 40 requests at once, spread over both replicas: exactly the burst gets through.
    results = await asyncio.gather(*(attempt(n % 2) for n in range(40)))
    assert sum(results) == 10
    with pytest.raises(ResourceExhausted):
        await a.check_rate(user)
    with pytest.raises(ResourceExhausted):
        await b.check_rate(user)


async def test_turn_slots_are_shared_and_freed(
    make_redis_limiter: MakeRedisLimiter, user: str
) -> None:
    settings = LimitSettings(max_concurrent_turns=2)
    a, b = make_redis_limiter(settings), make_redis_limiter(settings)
    async with a.turn_slot(user), b.turn_slot(user):
        assert await a.active_turns(user) == 2
        for replica in (a, b):
            with pytest.raises(ResourceExhausted) as refused:
                async with replica.turn_slot(user):
                    pass
            assert refused.value.reason == "CONCURRENCY_LIMITED"
            assert refused.value.retry_after == 1.0
            assert refused.value.metadata == {"limit": "2"}
    assert await a.active_turns(user) == 0
    async with b.turn_slot(user), a.turn_slot(user):
        pass


async def test_concurrent_slot_grabs_never_overshoot(
    make_redis_limiter: MakeRedisLimiter, user: str
) -> None:
    settings = LimitSettings(max_concurrent_turns=3)
    a, b = make_redis_limiter(settings), make_redis_limiter(settings)

    async def grab(n: int) -> bool:
        try:
            await (a, b)[n % 2].acquire_slot(user)
            return True
        except ResourceExhausted:
            return False

    assert sum(await asyncio.gather(*(grab(n) for n in range(30)))) == 3
    assert await b.active_turns(user) == 3


async def test_slots_of_a_crashed_replica_expire(
    make_redis_limiter: MakeRedisLimiter, rclient: aioredis.Redis, user: str
) -> None:
    settings = LimitSettings(max_concurrent_turns=1, turn_slot_ttl_seconds=30)
    crashed, survivor = make_redis_limiter(settings), make_redis_limiter(settings)
    slot = await crashed.acquire_slot(user)  # ... and the replica dies holding it
    key = crashed.turns_key(user)
    assert 29_000 < await rclient.pttl(key) <= 31_000
    with pytest.raises(ResourceExhausted):
        await survivor.acquire_slot(user)
    # Thirty seconds later (moved, not waited for) the slot has expired.
    expiry = await rclient.zscore(key, slot)
    assert expiry is not None
    await rclient.zadd(key, {slot: expiry - 30_001}, xx=True)
    async with survivor.turn_slot(user):
        assert await survivor.active_turns(user) == 1
        assert await rclient.zscore(key, slot) is None  # the dead slot was swept


async def test_a_live_turn_keeps_its_slot_past_the_ttl(
    make_redis_limiter: MakeRedisLimiter, rclient: aioredis.Redis, user: str
) -> None:
    # refresh_slot pushes the expiry out by one ttl from now. The expiry is moved 200 ms
    # back first, so the push shows; a long ttl leaves the calls in between all the time a
    # loaded machine needs (with 0.3 s, four round trips over 100 ms lost the slot).
    lim = make_redis_limiter(LimitSettings(max_concurrent_turns=1, turn_slot_ttl_seconds=30))
    slot = await lim.acquire_slot(user)
    key = lim.turns_key(user)
    await rclient.zadd(key, {slot: (await rclient.zscore(key, slot) or 0) - 200}, xx=True)
    before = await rclient.zscore(key, slot)
    assert await lim.refresh_slot(user, slot)
    after = await rclient.zscore(key, slot)
    assert before is not None and after is not None and after > before
    await lim.release_slot(user, slot)
    assert not await lim.refresh_slot(user, slot)  # a released slot is not revived

    # A turn held for twice the ttl is kept alive by the slot's refresher (every ttl/3: a
    # 1.5 s ttl lets the event loop stall for a second before the slot would lapse).
    short = make_redis_limiter(LimitSettings(max_concurrent_turns=1, turn_slot_ttl_seconds=1.5))
    async with short.turn_slot(user):
        await asyncio.sleep(3.0)  # the passage of time under test, not a wait for a state
        assert await short.active_turns(user) == 1
        with pytest.raises(ResourceExhausted):
            await short.acquire_slot(user)
    assert await short.active_turns(user) == 0


async def test_a_cancelled_turn_releases_its_shared_slot(
    make_redis_limiter: MakeRedisLimiter, user: str
) -> None:
    lim = make_redis_limiter(LimitSettings(max_concurrent_turns=1))
    entered = asyncio.Event()

    async def turn() -> None:
        async with lim.turn_slot(user):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(turn())
    await entered.wait()
    task.cancel()
    await asyncio.wait([task])
    assert await lim.active_turns(user) == 0


async def test_a_turn_cancelled_while_taking_its_slot_gives_it_back(
    make_redis_limiter: MakeRedisLimiter, user: str
) -> None:
    settings = LimitSettings(max_concurrent_turns=1)
    lim, observer = make_redis_limiter(settings), make_redis_limiter(settings)

    async def turn() -> None:
        async with lim.turn_slot(user):
            await asyncio.Event().wait()

    task = asyncio.create_task(turn())
    await asyncio.sleep(0)  # one step: the turn has sent for its slot, no answer yet
    task.cancel()
    await asyncio.wait([task])
    await lim.aclose()  # waits for the slot to arrive and be given back
    assert await observer.active_turns(user) == 0


async def test_daily_budget_is_shared_and_resets_at_utc_midnight(
    make_redis_limiter: MakeRedisLimiter, rclient: aioredis.Redis, user: str
) -> None:
    wall = FakeClock(datetime(2026, 3, 10, 23, 0, 0, tzinfo=UTC).timestamp())
    settings = LimitSettings(daily_token_budget=1000)
    a = make_redis_limiter(settings, wall=wall)
    b = make_redis_limiter(settings, wall=wall)
    await a.add_usage(user, 600)
    await b.check_budget(user)
    await b.add_usage(user, 400)
    for replica in (a, b):
        with pytest.raises(ResourceExhausted) as refused:
            await replica.check_budget(user)
        assert refused.value.reason == "TOKEN_BUDGET_EXHAUSTED"
        assert refused.value.retry_after == 3600
        assert refused.value.metadata == {
            "limit": "1000",
            "used": "1000",
            "resets_at": "2026-03-11T00:00:00Z",
        }
    key = a.usage_key(user)
    assert key.endswith(f"tokens:2026-03-10:{user}")
    assert USAGE_KEY_TTL_SECONDS - 5 < await rclient.ttl(key) <= USAGE_KEY_TTL_SECONDS
    wall.advance(3600)
    await a.check_budget(user)
    await b.check_budget(user)
    assert await a.used_today(user) == 0


async def test_exempt_users_bypass_every_limit_without_touching_redis(
    make_redis_limiter: MakeRedisLimiter, rclient: aioredis.Redis, prefix: str
) -> None:
    settings = LimitSettings(
        rate_rps=NEVER_REFILLS,
        rate_burst=1,
        max_concurrent_turns=1,
        daily_token_budget=1,
        exempt_users=frozenset({"indexer"}),
    )
    lim = make_redis_limiter(settings)
    for _ in range(5):
        await lim.check_rate("indexer")
    async with lim.turn_slot("indexer"), lim.turn_slot("indexer"):
        pass
    await lim.add_usage("indexer", 50)
    await lim.check_budget("indexer")
    assert [key async for key in rclient.scan_iter(match=f"{prefix}*")] == []


async def test_cost_budget_is_shared_in_exact_nano_units(
    make_redis_limiter: MakeRedisLimiter, rclient: aioredis.Redis, user: str
) -> None:
    wall = FakeClock(datetime(2026, 3, 10, 23, 0, 0, tzinfo=UTC).timestamp())
    settings = LimitSettings(daily_cost_budget_nanos=1_000_000_000, currency="USD")
    a = make_redis_limiter(settings, wall=wall)
    b = make_redis_limiter(settings, wall=wall)
    await a.add_usage(user, 5, 333_333_333)
    await b.add_usage(user, 5, 333_333_333)
    await a.check_budget(user)  # a third of a cent short
    await b.add_usage(user, 5, 333_333_334)
    for replica in (a, b):
        with pytest.raises(ResourceExhausted) as refused:
            await replica.check_budget(user)
        assert refused.value.reason == "COST_BUDGET_EXHAUSTED"
        assert refused.value.retry_after == 3600
        assert refused.value.metadata["used"] == "1" and refused.value.metadata["currency"] == "USD"
    key = a.cost_key(user)
    assert key.endswith(f"cost:2026-03-10:{user}")
    assert int(await rclient.get(key) or 0) == 1_000_000_000  # integers: no float drift
    assert USAGE_KEY_TTL_SECONDS - 5 < await rclient.ttl(key) <= USAGE_KEY_TTL_SECONDS
    assert await b.usage_today(user) == (15, 1_000_000_000)
    wall.advance(3600)
    await a.check_budget(user)
