"""Fixtures for the limits tests: the machine's real Redis and a key namespace per test.

Every test writes under its own prefix (``aichat:limits:test-<random>:``) and deletes it
afterwards, so parallel runs on one Redis never see each other's keys. In CI (CI=true) a
missing Redis fails the run instead of skipping these tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import pytest
import redis
import redis.asyncio as aioredis

from aichat_backend.limits.base import LimitSettings
from aichat_backend.limits.redis_limits import RedisLimiter
from tests.support.ci import IN_CI

REDIS_URL = os.environ.get("AICHAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1).ping()
    except (redis.RedisError, OSError) as exc:
        if IN_CI:
            pytest.fail(f"Redis is required in CI but unreachable at {REDIS_URL}: {exc!r}")
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {exc!r}")
    return REDIS_URL


@pytest.fixture(scope="session")
def redis_address(redis_url: str) -> tuple[str, int]:
    parts = urlsplit(redis_url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


@pytest.fixture
async def rclient(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client to the real Redis, for looking at and bending the limiters' keys."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(rclient: aioredis.Redis) -> AsyncIterator[str]:
    namespace = f"aichat:limits:test-{uuid.uuid4().hex[:12]}:"
    yield namespace
    keys = [key async for key in rclient.scan_iter(match=f"{namespace}*", count=500)]
    if keys:
        await rclient.delete(*keys)


MakeRedisLimiter = Callable[..., RedisLimiter]


@pytest.fixture
async def make_redis_limiter(redis_url: str, prefix: str) -> AsyncIterator[MakeRedisLimiter]:
    """Build RedisLimiters on the test's namespace (each one is a replica of its own)."""
    made: list[RedisLimiter] = []

    def make(settings: LimitSettings, url: str | None = None, **kwargs: object) -> RedisLimiter:
        kwargs.setdefault("prefix", prefix)
        limiter = RedisLimiter(settings, url or redis_url, **kwargs)  # type: ignore[arg-type]
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()
