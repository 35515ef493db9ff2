"""Per-user limits around chat turns: budget before, a concurrency slot during, usage after.

The one place this rule is written: every turn (StreamChat, SendMessage,
ResolveToolCalls) runs inside ``TurnLimits.turn(user)`` and hands its TurnEnded to the
slot's ``count``. Without a limiter configured, ``NO_LIMITS`` gives slots that do nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from aichat_backend.engine import events as ev
from aichat_backend.errors import ResourceExhausted
from aichat_backend.limits.base import Limiter
from aichat_backend.reasons import Reason

OnRefused = Callable[[str], None]
# The user's own limits that a turn meets after it started (not a provider's refusals).
REFUSED_INSIDE = frozenset({Reason.STORAGE_QUOTA_EXCEEDED})


class TurnLimits:
    def __init__(self, limiter: Limiter, on_refused: OnRefused | None = None) -> None:
        self._limiter = limiter
        self._on_refused = on_refused

    async def check_rate(self, user_id: str) -> None:
        """The interceptor's gate: one request from the user's bucket."""
        try:
            await self._limiter.check_rate(user_id)
        except ResourceExhausted as exc:
            self._refused(exc)
            raise

    def turn(self, user_id: str) -> TurnSlot:
        """The budget checked and a concurrency slot held, for the ``async with`` body."""
        return _LimitedTurn(self._limiter, user_id, self._refused)

    def _refused(self, exc: ResourceExhausted) -> None:
        if self._on_refused is not None:
            self._on_refused(exc.reason)


class TurnSlot:
    """A turn's place inside the user's limits; this base is the unlimited one.

    Classes, not generator-based context managers or a generator around the events:
    every held stream keeps one, and no layer is added per event.
    """

    __slots__ = ()

    async def __aenter__(self) -> TurnSlot:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def count(self, ended: ev.TurnEnded) -> None:
        """The tokens and cost a finished turn reported, against the user's budgets."""


class TurnGate(Protocol):
    """What a servicer needs of the limits: a slot per turn."""

    def turn(self, user_id: str) -> TurnSlot: ...


class _NoLimits:
    def turn(self, user_id: str) -> TurnSlot:
        return _UNLIMITED


_UNLIMITED = TurnSlot()
NO_LIMITS: TurnGate = _NoLimits()


class _LimitedTurn(TurnSlot):
    __slots__ = ("_limiter", "_refused", "_slot", "_user")

    def __init__(
        self, limiter: Limiter, user_id: str, refused: Callable[[ResourceExhausted], None]
    ) -> None:
        self._limiter = limiter
        self._user = user_id
        self._refused = refused
        self._slot: AbstractAsyncContextManager[None] | None = None

    async def __aenter__(self) -> TurnSlot:
        try:
            await self._limiter.check_budget(self._user)
            slot = self._limiter.turn_slot(self._user)
            await slot.__aenter__()
        except ResourceExhausted as exc:
            self._refused(exc)
            raise
        self._slot = slot
        return self

    async def __aexit__(self, *exc: object) -> None:
        refused = exc[1]
        if isinstance(refused, ResourceExhausted) and refused.reason in REFUSED_INSIDE:
            # Refused inside the turn (the storage quota is checked where the message is
            # stored): counted with the refusals at the door.
            self._refused(refused)
        slot, self._slot = self._slot, None
        if slot is not None:
            await slot.__aexit__(None, None, None)

    async def count(self, ended: ev.TurnEnded) -> None:
        used = ended.input_tokens + ended.output_tokens
        # The cost is in the catalogue's currency, which is the budget's (wiring/configs).
        nanos = ended.cost.nanos if ended.cost is not None else 0
        if used or nanos:
            await self._limiter.add_usage(self._user, used, nanos)
