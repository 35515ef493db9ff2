"""Limits shared by every replica through one Redis.

Each limit is one atomic Lua script (see ``redis_scripts``), never a read followed by a
write. Keys live under one prefix (``aichat:limits:`` by default):

* ``{prefix}rate:{user}`` — hash {tokens, ts}: the user's token bucket; expires once full.
* ``{prefix}turns:{user}`` — sorted set of turn-slot ids scored by expiry (ms). A slot
  whose replica crashed expires after ``turn_slot_ttl_seconds``; a live turn refreshes
  its slot every third of that.
* ``{prefix}tokens:{YYYY-MM-DD}:{user}`` — tokens used that UTC day (INCRBY); expires
  two days after its last write.
* ``{prefix}cost:{YYYY-MM-DD}:{user}`` — what that day's calls cost, in nano units of
  the budget's currency (INCRBY: integers add exactly); expires like the tokens.

Sockets time out quickly (0.5 s by default) so a dead Redis costs a request at most about
that much; every Redis failure surfaces as ``LimitStoreUnavailable`` (the caller, usually
``ResilientLimiter``, falls back to per-process limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from aichat_backend.errors import Unavailable
from aichat_backend.limits import redis_scripts, refusals
from aichat_backend.limits.base import LimitSettings
from aichat_backend.reasons import Reason

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "aichat:limits:"
# A day's counter outlives its day so a late add_usage or a replica's clock skew still finds it.
USAGE_KEY_TTL_SECONDS = 2 * refusals.SECONDS_PER_DAY

T = TypeVar("T")


class LimitStoreUnavailable(Unavailable):
    """The shared limit store (Redis) did not answer, or answered with an error."""

    default_reason = Reason.LIMITS_UNAVAILABLE

    def __init__(self, cause: BaseException) -> None:
        super().__init__("The shared rate-limit store is unavailable.")
        self.cause_type = type(cause).__name__


class RedisLimiter:
    """Shared limits in Redis. ``redis_url`` or a ready ``client`` (which it then does not
    close). ``wall`` (Unix seconds) decides the UTC day of a token count; bucket and slot
    times come from Redis itself."""

    def __init__(
        self,
        settings: LimitSettings,
        redis_url: str | None = None,
        *,
        client: aioredis.Redis | None = None,
        prefix: str = DEFAULT_PREFIX,
        connect_timeout: float = 0.5,
        op_timeout: float = 0.5,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if client is None:
            if not redis_url:
                raise ValueError("RedisLimiter needs a redis_url or a client")
            client = aioredis.Redis.from_url(
                redis_url,
                socket_connect_timeout=connect_timeout,
                socket_timeout=op_timeout,
                # One immediate retry on a broken pooled connection (Redis restarted), none
                # on a timeout: a hung Redis must cost one timeout, not several.
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
                decode_responses=True,
            )
            self._owns_client = True
        else:
            self._owns_client = False
        self.client = client
        self.settings = settings
        self.prefix = prefix
        self._wall = wall
        self._burst = max(1, settings.rate_burst)
        self._slot_ttl_ms = max(1, round(settings.turn_slot_ttl_seconds * 1000))
        self._last_error: str | None = None
        # Slot releases and refreshers in flight: held here so none is collected midway.
        self._tasks: set[asyncio.Task[Any]] = set()
        self._keepers: set[asyncio.Task[None]] = set()
        self._bucket = client.register_script(redis_scripts.TOKEN_BUCKET)
        self._acquire = client.register_script(redis_scripts.ACQUIRE_SLOT)
        self._refresh = client.register_script(redis_scripts.REFRESH_SLOT)
        self._count = client.register_script(redis_scripts.COUNT_SLOTS)

    # --- keys --------------------------------------------------------------------------

    def rate_key(self, user_id: str) -> str:
        return f"{self.prefix}rate:{user_id}"

    def turns_key(self, user_id: str) -> str:
        return f"{self.prefix}turns:{user_id}"

    def usage_key(self, user_id: str, day: str | None = None) -> str:
        return f"{self.prefix}tokens:{day or refusals.utc_day(self._wall())}:{user_id}"

    def cost_key(self, user_id: str, day: str | None = None) -> str:
        return f"{self.prefix}cost:{day or refusals.utc_day(self._wall())}:{user_id}"

    # --- plumbing ----------------------------------------------------------------------

    async def _call(self, operation: Awaitable[T]) -> T:
        """Run one Redis round trip, turning every way it can fail into one error type."""
        try:
            result = await operation
        except (RedisError, OSError, TimeoutError) as exc:
            self._last_error = type(exc).__name__
            raise LimitStoreUnavailable(exc) from exc
        self._last_error = None
        return result

    async def ping(self) -> None:
        """Raise ``LimitStoreUnavailable`` unless Redis runs a limit script. A script, not
        PING: a Redis that answers PING but refuses writes (out of memory, a read-only
        replica) cannot hold limits either."""
        await self._call(self._bucket(keys=[f"{self.prefix}probe"], args=["1000.0", 1000]))

    # --- request rate ------------------------------------------------------------------

    async def check_rate(self, user_id: str) -> None:
        rps = self.settings.rate_rps
        if rps <= 0 or user_id in self.settings.exempt_users:
            return
        reply: list[Any] = await self._call(
            self._bucket(keys=[self.rate_key(user_id)], args=[repr(float(rps)), self._burst])
        )
        if int(reply[0]) != 1:
            raise refusals.rate_limited(rps, self._burst, float(reply[1]))

    # --- concurrent turns --------------------------------------------------------------

    async def acquire_slot(self, user_id: str) -> str:
        """Take a turn slot and return its id, or raise CONCURRENCY_LIMITED."""
        limit = self.settings.max_concurrent_turns
        slot = uuid.uuid4().hex
        reply: list[Any] = await self._call(
            self._acquire(keys=[self.turns_key(user_id)], args=[limit, slot, self._slot_ttl_ms])
        )
        if int(reply[0]) != 1:
            raise refusals.concurrency_limited(limit)
        return slot

    async def refresh_slot(self, user_id: str, slot: str) -> bool:
        """Push a held slot's expiry out by the slot ttl; False if it had already expired."""
        reply = await self._call(
            self._refresh(keys=[self.turns_key(user_id)], args=[slot, self._slot_ttl_ms])
        )
        return int(reply) == 1

    async def release_slot(self, user_id: str, slot: str) -> None:
        await self._call(self.client.zrem(self.turns_key(user_id), slot))

    async def active_turns(self, user_id: str) -> int:
        """Unexpired slots held by the user across all replicas."""
        return int(await self._call(self._count(keys=[self.turns_key(user_id)])))

    @asynccontextmanager
    async def turn_slot(self, user_id: str) -> AsyncIterator[None]:
        if self.settings.max_concurrent_turns <= 0 or user_id in self.settings.exempt_users:
            yield
            return
        acquiring = self._spawn(self.acquire_slot(user_id))
        try:
            slot = await asyncio.shield(acquiring)
        except asyncio.CancelledError:
            # Cancelled while the script may already have added the slot: give it back
            # once we know, rather than leave it taken until it expires.
            acquiring.add_done_callback(lambda done: self._release_orphan(user_id, done))
            raise
        keeper = asyncio.get_running_loop().create_task(self._keep_alive(user_id, slot))
        self._keepers.add(keeper)
        keeper.add_done_callback(self._keepers.discard)
        try:
            yield
        finally:
            keeper.cancel()
            # Shielded: a cancelled RPC must still give its slot back.
            await asyncio.shield(self._spawn(self._release_quietly(user_id, slot)))

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _release_orphan(self, user_id: str, acquiring: asyncio.Task[str]) -> None:
        if not acquiring.cancelled() and acquiring.exception() is None:
            self._spawn(self._release_quietly(user_id, acquiring.result()))

    async def _keep_alive(self, user_id: str, slot: str) -> None:
        interval = self._slot_ttl_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.refresh_slot(user_id, slot):
                    return
            except LimitStoreUnavailable:
                continue  # Redis is away; try again next time, the slot may still be live

    async def _release_quietly(self, user_id: str, slot: str) -> None:
        try:
            await self.release_slot(user_id, slot)
        except LimitStoreUnavailable as exc:
            # The turn is over either way; the slot expires after turn_slot_ttl_seconds.
            log.info(
                "turn slot not released in redis; it will expire",
                extra={"error": exc.cause_type},
            )

    # --- daily budgets (tokens, money) -----------------------------------------------

    async def used_today(self, user_id: str) -> int:
        value = await self._call(self.client.get(self.usage_key(user_id)))
        return int(value or 0)

    async def usage_today(self, user_id: str) -> tuple[int, int]:
        """(tokens, cost in nanos) counted today, in one round trip."""
        day = refusals.utc_day(self._wall())
        keys = [self.usage_key(user_id, day), self.cost_key(user_id, day)]
        tokens, nanos = await self._call(self.client.mget(keys))
        return int(tokens or 0), int(nanos or 0)

    async def check_budget(self, user_id: str) -> None:
        if not self.settings.budgets_apply(user_id):
            return
        now = self._wall()
        refusals.check_budgets(self.settings, await self.usage_today(user_id), now)

    async def add_usage(self, user_id: str, tokens: int, cost_nanos: int = 0) -> None:
        if (tokens <= 0 and cost_nanos <= 0) or not self.settings.budgets_apply(user_id):
            return
        await self.add_usage_on(user_id, tokens, refusals.utc_day(self._wall()), cost_nanos)

    async def add_usage_on(self, user_id: str, tokens: int, day: str, cost_nanos: int = 0) -> None:
        """Count tokens and cost against a given UTC day (used to replay usage counted
        during an outage)."""
        pipe = self.client.pipeline(transaction=True)
        for key, amount in (
            (self.usage_key(user_id, day), tokens),
            (self.cost_key(user_id, day), cost_nanos),
        ):
            if amount > 0:
                pipe.incrby(key, amount)
                pipe.expire(key, USAGE_KEY_TTL_SECONDS)
        await self._call(pipe.execute())

    # --- housekeeping ------------------------------------------------------------------

    def degraded(self) -> str | None:
        if self._last_error is None:
            return None
        return f"redis limits unavailable ({self._last_error})"

    async def aclose(self) -> None:
        for keeper in list(self._keepers):
            keeper.cancel()
        # Let slot releases finish (each is bounded by the socket timeouts); a finishing
        # acquire may start one more release, hence the loop.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while (pending := [t for t in self._tasks if not t.done()]) and loop.time() < deadline:
            await asyncio.wait(pending, timeout=deadline - loop.time())
        if self._owns_client:
            with contextlib.suppress(RedisError, OSError):
                await self.client.aclose()
