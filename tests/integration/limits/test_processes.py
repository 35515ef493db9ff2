"""Two real processes, each its own RedisLimiter, hammer the same user at the same time:
the limits hold for the two combined, as they would for two replicas of the server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from aichat_backend.limits.base import LimitSettings
from aichat_backend.limits.redis_limits import RedisLimiter

pytestmark = pytest.mark.timeout(20)

ROOT = Path(__file__).resolve().parents[3]

# Each child: connect, say "ready", wait for "go" (so both run at once), then try 15
# requests, 3 turn slots and rounds of check-budget-then-spend-10-tokens until refused.
CHILD = """
import asyncio, json, sys
from aichat_backend.errors import ResourceExhausted
from aichat_backend.limits.base import LimitSettings
from aichat_backend.limits.redis_limits import RedisLimiter

async def main() -> None:
    url, prefix, user = sys.argv[1:4]
    settings = LimitSettings(
        rate_rps=0.0001, rate_burst=10, max_concurrent_turns=3, daily_token_budget=1000
    )
    limiter = RedisLimiter(settings, url, prefix=prefix)
    await limiter.ping()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    counts = {"requests": 0, "slots": 0, "spent": 0, "refused": []}
    for _ in range(15):
        try:
            await limiter.check_rate(user)
            counts["requests"] += 1
        except ResourceExhausted as exc:
            counts["refused"].append(exc.reason)
    for _ in range(3):
        try:
            await limiter.acquire_slot(user)  # held until the process exits
            counts["slots"] += 1
        except ResourceExhausted as exc:
            counts["refused"].append(exc.reason)
    for _ in range(150):  # enough to spend the whole budget alone
        try:
            await limiter.check_budget(user)
        except ResourceExhausted as exc:
            counts["refused"].append(exc.reason)
            break
        await limiter.add_usage(user, 10)
        counts["spent"] += 10
    print(json.dumps(counts), flush=True)
    await limiter.aclose()

asyncio.run(main())
"""


async def test_limits_hold_across_two_processes(
    redis_url: str, prefix: str, rclient: aioredis.Redis, user: str
) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(ROOT / "gen"), env.get("PYTHONPATH", "")]
    )
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            redis_url,
            prefix,
            user,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert (await child.stdout.readline()).strip() == b"ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        outputs = [await child.communicate() for child in children]
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert [child.returncode for child in children] == [0, 0]
    results = [json.loads(stdout.decode().strip().splitlines()[-1]) for stdout, _ in outputs]

    # The burst (10) and the slots (3) are for both processes together, not each.
    assert sum(r["requests"] for r in results) == 10
    assert sum(r["slots"] for r in results) == 3
    refused = [reason for r in results for reason in r["refused"]]
    assert refused.count("RATE_LIMITED") == 30 - 10
    assert refused.count("CONCURRENCY_LIMITED") == 6 - 3
    # One day's counter for both: every token either process spent is in it, and neither
    # process went on spending once the shared total reached the budget. (A check comes
    # before a turn and its usage after it, so the two may together overshoot by at most
    # one turn each.)
    spent = sum(r["spent"] for r in results)
    parent = RedisLimiter(LimitSettings(daily_token_budget=1000), client=rclient, prefix=prefix)
    assert await parent.used_today(user) == spent
    assert 1000 <= spent <= 1000 + 2 * 10
    assert refused.count("TOKEN_BUDGET_EXHAUSTED") == 2
