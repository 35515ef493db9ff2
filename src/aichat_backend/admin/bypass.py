"""The rate-limit bypass list as each replica holds it: a snapshot of the table, refreshed.

The table is the truth; every replica re-reads it every ``refresh_seconds`` (2 s by
default), and the replica that made a change re-reads at once. A short-TTL cache rather
than Redis pub/sub: it needs nothing but the database every replica already has, a lost
message cannot leave a replica stale for good, and a change applies everywhere within
one refresh, Redis or not. The check on the request path is a set lookup, and nothing
at all while the list is empty.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aichat_backend import request_context
from aichat_backend.admin_records import SubjectType
from aichat_backend.store import admin_repo
from aichat_backend.store.database import Database

log = logging.getLogger(__name__)

Gate = Callable[[str], Awaitable[None]]


class BypassList:
    def __init__(
        self, db: Database, *, refresh_seconds: float = 2.0, api_key_header: str = "x-api-key-id"
    ) -> None:
        self._db = db
        self._refresh = refresh_seconds
        self._api_key_header = api_key_header.lower()
        self._users: frozenset[str] = frozenset()
        self._keys: frozenset[str] = frozenset()
        self._failing = False
        self._reloaded = asyncio.Event()  # replaced on each reload: waiters see the next

    def __len__(self) -> int:
        return len(self._users) + len(self._keys)

    def exempts(self, user_id: str, api_key: str | None) -> bool:
        return user_id in self._users or (api_key is not None and api_key in self._keys)

    async def reload(self) -> None:
        async with self._db.read() as tx:
            subjects = await admin_repo.all_bypass_subjects(tx)
        self._users = frozenset(s for t, s in subjects if t == SubjectType.USER.value)
        self._keys = frozenset(s for t, s in subjects if t == SubjectType.API_KEY.value)
        reloaded, self._reloaded = self._reloaded, asyncio.Event()
        reloaded.set()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Until ``predicate()`` holds, re-checked after each reload (for tests)."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._reloaded.wait()
        except TimeoutError:
            return predicate()
        return True

    async def run(self) -> None:
        """Refresh forever (a background task); database trouble keeps the last snapshot."""
        while True:
            try:
                await self.reload()
                if self._failing:
                    log.info("rate-limit bypass list readable again")
                self._failing = False
            except Exception as exc:  # the top of a background task: it must not die
                if not self._failing:
                    log.warning("rate-limit bypass list not refreshed: %s", type(exc).__name__)
                self._failing = True
            await asyncio.sleep(self._refresh)

    def gate(self, check_rate: Gate) -> Gate:
        """``check_rate`` skipped for exempt callers (the interceptor's gate)."""

        async def gated(user_id: str) -> None:
            if user_id in self._users:
                return
            if self._keys:
                keys = request_context.trusted_header(self._api_key_header)
                # Exactly one value counts: two would be a confused or forged request.
                if len(keys) == 1 and keys[0] in self._keys:
                    return
            await check_rate(user_id)

        return gated
