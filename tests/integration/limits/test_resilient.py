"""Redis away: requests are still served under per-process limits, the outage is said once
(log and ``degraded()``), and shared limits come back when Redis does."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis.asyncio as aioredis

from aichat_backend.errors import ResourceExhausted
from aichat_backend.limits import resilient
from aichat_backend.limits.base import LimitSettings
from aichat_backend.limits.factory import build_limiter
from aichat_backend.limits.local import LocalLimiter
from aichat_backend.limits.resilient import ResilientLimiter
from tests.integration.limits.conftest import MakeRedisLimiter
from tests.integration.limits.support import (
    Records,
    SilentServer,
    StoppableProxy,
    closed_port,
)

pytestmark = pytest.mark.timeout(10)

NEVER_REFILLS = 0.0001

MakeResilient = Callable[[LimitSettings, str], ResilientLimiter]


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger(resilient.__name__)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


@pytest.fixture
async def proxy(redis_address: tuple[str, int]) -> AsyncIterator[StoppableProxy]:
    proxy = StoppableProxy(redis_address)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
async def make_resilient(
    make_redis_limiter: MakeRedisLimiter,
) -> AsyncIterator[MakeResilient]:
    made: list[ResilientLimiter] = []

    def make(settings: LimitSettings, url: str) -> ResilientLimiter:
        limiter = ResilientLimiter(
            make_redis_limiter(settings, url),
            LocalLimiter(settings),
            probe_backoff=0.02,
            max_probe_backoff=0.1,
        )
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()


async def test_no_redis_url_means_per_process_limits() -> None:
    limiter = build_limiter(LimitSettings(rate_rps=NEVER_REFILLS, rate_burst=1), None)
    assert isinstance(limiter, LocalLimiter)
    await limiter.check_rate("alice")
    with pytest.raises(ResourceExhausted):
        await limiter.check_rate("alice")


async def test_redis_url_means_shared_limits(
    redis_url: str, prefix: str, rclient: aioredis.Redis, user: str
) -> None:
    limiter = build_limiter(
        LimitSettings(rate_rps=NEVER_REFILLS, rate_burst=2), redis_url, prefix=prefix
    )
    try:
        assert isinstance(limiter, ResilientLimiter)
        await limiter.check_rate(user)
        assert await rclient.exists(f"{prefix}rate:{user}") == 1
        assert limiter.degraded() is None
    finally:
        await limiter.aclose()


async def test_closed_port_serves_under_local_limits_and_says_so_once(
    make_resilient: MakeResilient, records: Records, user: str
) -> None:
    settings = LimitSettings(
        rate_rps=NEVER_REFILLS, rate_burst=3, max_concurrent_turns=1, daily_token_budget=100
    )
    limiter = make_resilient(settings, f"redis://127.0.0.1:{closed_port()}/0")
    started = time.monotonic()
    for _ in range(3):
        await limiter.check_rate(user)
    assert time.monotonic() - started < 1.0  # a refused connection costs nothing
    reason = limiter.degraded()
    assert reason is not None and "redis" in reason and "ConnectionError" in reason
    # Still limited, by this process alone.
    with pytest.raises(ResourceExhausted) as refused:
        await limiter.check_rate(user)
    assert refused.value.reason == "RATE_LIMITED"
    async with limiter.turn_slot(user):
        with pytest.raises(ResourceExhausted) as refused:
            async with limiter.turn_slot(user):
                pass
        assert refused.value.reason == "CONCURRENCY_LIMITED"
    await limiter.add_usage(user, 100)
    with pytest.raises(ResourceExhausted) as refused:
        await limiter.check_budget(user)
    assert refused.value.reason == "TOKEN_BUDGET_EXHAUSTED"

    warnings = records.at(logging.WARNING)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert getattr(warnings[0], "error", None) == "ConnectionError"
    assert not await limiter.probe()
    assert len(records.at(logging.WARNING)) == 1


async def test_hung_redis_costs_one_short_timeout(
    make_resilient: MakeResilient, records: Records, user: str
) -> None:
    silent = SilentServer()
    await silent.start()
    try:
        limiter = make_resilient(LimitSettings(rate_rps=NEVER_REFILLS, rate_burst=2), silent.url)
        started = time.monotonic()
        await limiter.check_rate(user)
        assert time.monotonic() - started < 1.5  # 0.5 s socket timeout, no retries
        assert "TimeoutError" in (limiter.degraded() or "")
        # Degraded: the next requests do not wait for Redis at all.
        started = time.monotonic()
        await limiter.check_rate(user)
        with pytest.raises(ResourceExhausted):
            await limiter.check_rate(user)
        assert time.monotonic() - started < 0.1
        assert len(records.at(logging.WARNING)) == 1
    finally:
        await silent.close()


async def test_stopped_proxy_falls_back_then_recovers(
    make_resilient: MakeResilient,
    proxy: StoppableProxy,
    rclient: aioredis.Redis,
    records: Records,
    user: str,
) -> None:
    settings = LimitSettings(rate_rps=NEVER_REFILLS, rate_burst=3)
    limiter = make_resilient(settings, proxy.url)
    await limiter.check_rate(user)  # shared: Redis holds the bucket
    assert limiter.degraded() is None
    bucket = limiter.shared.rate_key(user)
    assert float(await rclient.hget(bucket, "tokens") or -1) == pytest.approx(2, abs=0.01)

    await proxy.stop()
    for _ in range(3):  # the local bucket is full: three more are allowed...
        await limiter.check_rate(user)
    with pytest.raises(ResourceExhausted) as refused:  # ...and then no more
        await limiter.check_rate(user)
    assert refused.value.reason == "RATE_LIMITED"
    assert limiter.degraded() is not None
    assert not limiter.shared_in_force.is_set()
    assert [r.getMessage() for r in records.at(logging.WARNING)] == [
        "redis unreachable: falling back to per-process limits"
    ]
    # Redis never saw the fallback traffic.
    assert float(await rclient.hget(bucket, "tokens") or -1) == pytest.approx(2, abs=0.01)

    await proxy.start()  # same port: Redis is back
    await asyncio.wait_for(limiter.shared_in_force.wait(), timeout=5)  # the prober found it
    assert limiter.degraded() is None
    assert len(records.at(logging.WARNING)) == 1
    assert [r.getMessage() for r in records.at(logging.INFO)] == [
        "redis reachable again: shared limits restored"
    ]
    await limiter.check_rate(user)  # the shared bucket again
    assert float(await rclient.hget(bucket, "tokens") or -1) == pytest.approx(1, abs=0.01)


async def test_a_slot_is_released_where_it_was_taken(
    make_resilient: MakeResilient,
    proxy: StoppableProxy,
    rclient: aioredis.Redis,
    user: str,
) -> None:
    settings = LimitSettings(max_concurrent_turns=2)
    limiter = make_resilient(settings, proxy.url)
    turns_key = limiter.shared.turns_key(user)

    # Taken in Redis, Redis goes away, the turn ends: nothing is given back locally, and
    # the Redis slot is left to expire (its release could not reach Redis).
    async with limiter.turn_slot(user):
        assert await rclient.zcard(turns_key) == 1
        await proxy.stop()
    assert limiter.local.active_turns(user) == 0
    assert await rclient.zcard(turns_key) == 1
    await rclient.delete(turns_key)

    # Taken locally during the outage, Redis comes back, the turn ends: released locally,
    # and Redis is not touched.
    async with limiter.turn_slot(user):
        assert limiter.degraded() is not None
        assert limiter.local.active_turns(user) == 1
        await proxy.start()
        assert await limiter.probe()
        async with limiter.turn_slot(user):  # a new turn is shared again
            assert await rclient.zcard(turns_key) == 1
            assert limiter.local.active_turns(user) == 1
    assert limiter.local.active_turns(user) == 0
    assert await rclient.zcard(turns_key) == 0


async def test_tokens_spent_during_an_outage_reach_redis_on_recovery(
    make_resilient: MakeResilient, proxy: StoppableProxy, user: str
) -> None:
    settings = LimitSettings(daily_token_budget=100)
    limiter = make_resilient(settings, proxy.url)
    await limiter.add_usage(user, 30)
    await proxy.stop()
    await limiter.add_usage(user, 50)
    assert limiter.degraded() is not None
    await limiter.add_usage(user, 20)
    await limiter.check_budget(user)  # this process saw 70 tokens while alone: under budget
    assert limiter.local.used_today(user) == 70
    await proxy.start()
    assert await limiter.probe()
    # Redis has all 100: the shared budget is spent.
    assert await limiter.shared.used_today(user) == 100
    with pytest.raises(ResourceExhausted) as refused:
        await limiter.check_budget(user)
    assert refused.value.reason == "TOKEN_BUDGET_EXHAUSTED"


async def test_the_fallback_budget_starts_from_the_last_shared_total(
    make_resilient: MakeResilient, proxy: StoppableProxy, user: str
) -> None:
    limiter = make_resilient(LimitSettings(daily_token_budget=100), proxy.url)
    await limiter.add_usage(user, 80)
    await limiter.check_budget(user)  # Redis says 80
    await proxy.stop()
    await limiter.add_usage(user, 20)  # counted locally, on top of the 80 last seen
    assert limiter.degraded() is not None
    with pytest.raises(ResourceExhausted) as refused:
        await limiter.check_budget(user)
    assert refused.value.metadata["used"] == "100"
    await proxy.start()
    assert await limiter.probe()
    assert await limiter.shared.used_today(user) == 100  # only the 20 were replayed


async def test_two_probes_at_once_replay_the_outage_once(
    make_resilient: MakeResilient, proxy: StoppableProxy, user: str
) -> None:
    # probe() while the background prober is replaying too (as the test above did when
    # the prober woke at the same moment): each sent the same 70 tokens, Redis saw 170.
    limiter = make_resilient(LimitSettings(daily_token_budget=1000), proxy.url)
    await limiter.add_usage(user, 30)
    await proxy.stop()
    await limiter.add_usage(user, 70)
    assert limiter.degraded() is not None
    await proxy.start()
    assert all(await asyncio.gather(limiter.probe(), limiter.probe()))
    assert await limiter.shared.used_today(user) == 100


async def test_cost_spent_during_an_outage_reaches_redis_on_recovery(
    make_resilient: MakeResilient, proxy: StoppableProxy, user: str
) -> None:
    limiter = make_resilient(LimitSettings(daily_cost_budget_nanos=100), proxy.url)
    await limiter.add_usage(user, 1, 30)
    await limiter.check_budget(user)  # Redis says 30: remembered locally
    await proxy.stop()
    await limiter.add_usage(user, 1, 50)
    assert limiter.degraded() is not None
    await limiter.add_usage(user, 1, 10)
    await limiter.check_budget(user)  # 30 last seen + 60 counted alone: under budget
    assert limiter.local.cost_today(user) == 90
    await proxy.start()
    assert await limiter.probe()
    assert await limiter.shared.usage_today(user) == (3, 90)  # the 60 were replayed
    await limiter.add_usage(user, 1, 10)
    with pytest.raises(ResourceExhausted) as refused:
        await limiter.check_budget(user)
    assert refused.value.reason == "COST_BUDGET_EXHAUSTED"
