"""Concurrency slots in one process: at most N holders in all, at most M per key (a user).

The per-process bound on what is costly to run in parallel here: sandbox calls, PDF
readers, database connections, exports. A holder waits its turn for up to ``wait``
seconds; with ``key_waits=False`` a key already at its share is refused at once instead
(one user's burst is not queued behind itself). Refusals are ``SlotsBusy``, which each
owner words for its callers. Nothing is shared between processes: what these slots guard
is this process's memory and CPU.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class SlotsBusy(Exception):
    """No slot: ``scope`` is "key" (the key's own share is taken) or "total"."""

    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(f"{scope} limit of {limit} reached")
        self.scope = scope
        self.limit = limit


class Slots:
    def __init__(self, total: int | None, per_key: int | None) -> None:
        """``None``: no bound of that kind."""
        self.total = total
        self.per_key = per_key
        self._held: dict[str, int] = {}
        self._count = 0
        self._changed: asyncio.Condition | None = None

    def held(self, key: str | None = None) -> int:
        """Slots held now: by ``key``, or in all."""
        return self._count if key is None else self._held.get(key, 0)

    def _key_free(self, key: str) -> bool:
        return self.per_key is None or self._held.get(key, 0) < self.per_key

    def _total_free(self) -> bool:
        return self.total is None or self._count < self.total

    def hold(self, key: str, *, wait: float, key_waits: bool = True) -> _Hold:
        """``async with slots.hold(user, wait=...)``: a slot for the body, or ``SlotsBusy``."""
        return _Hold(self, key, wait, key_waits)

    async def _acquire(self, key: str, wait: float, key_waits: bool) -> None:
        if self._changed is None:
            self._changed = asyncio.Condition()
        if not self._key_free(key) and not key_waits:
            raise SlotsBusy("key", self.per_key or 0)
        if not (self._key_free(key) and self._total_free()):
            try:
                async with asyncio.timeout(wait), self._changed:
                    await self._changed.wait_for(lambda: self._key_free(key) and self._total_free())
            except TimeoutError:
                scope = "key" if not self._key_free(key) else "total"
                limit = self.per_key if scope == "key" else self.total
                raise SlotsBusy(scope, limit or 0) from None
        self._held[key] = self._held.get(key, 0) + 1
        self._count += 1

    async def _release(self, key: str) -> None:
        left = self._held.get(key, 1) - 1
        if left > 0:
            self._held[key] = left
        else:
            self._held.pop(key, None)
        self._count -= 1
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()


class _Hold:
    __slots__ = ("_key", "_key_waits", "_slots", "_taken", "_wait")

    def __init__(self, slots: Slots, key: str, wait: float, key_waits: bool) -> None:
        self._slots, self._key, self._wait, self._key_waits = slots, key, wait, key_waits
        self._taken = False

    async def __aenter__(self) -> None:
        await self._slots._acquire(self._key, self._wait, self._key_waits)
        self._taken = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._taken:
            self._taken = False
            await self._slots._release(self._key)
