"""Choose the limiter for this process: per-process alone, or Redis with a local fallback."""

from __future__ import annotations

from aichat_backend.limits.base import Limiter, LimitSettings
from aichat_backend.limits.local import LocalLimiter


def build_limiter(
    settings: LimitSettings,
    redis_url: str | None,
    *,
    prefix: str | None = None,
) -> Limiter:
    """Per-process limits without a Redis URL; otherwise limits shared by every replica
    through Redis, falling back to per-process limits while Redis is unreachable.

    No connection is made here (Redis.from_url only parses the URL, so a malformed one
    fails at start-up); the first limit check connects.
    """
    local = LocalLimiter(settings)
    if not redis_url:
        return local
    # Imported only when configured: the redis client is ~6 MB of an idle process.
    from aichat_backend.limits.redis_limits import DEFAULT_PREFIX, RedisLimiter
    from aichat_backend.limits.resilient import ResilientLimiter

    remote = RedisLimiter(settings, redis_url, prefix=prefix or DEFAULT_PREFIX)
    return ResilientLimiter(remote, local)
