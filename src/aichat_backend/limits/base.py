"""The limits contract: what the API layer asks before letting a user's work run.

Every refusal is ``ResourceExhausted`` with a reason (RATE_LIMITED, CONCURRENCY_LIMITED,
TOKEN_BUDGET_EXHAUSTED, COST_BUDGET_EXHAUSTED) and ``retry_after`` seconds, which the error
table turns into RESOURCE_EXHAUSTED with ErrorInfo and RetryInfo (HTTP 429 through Envoy).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class LimitSettings:
    rate_rps: float = 5.0  # token bucket refill per user, requests per second (0 = off)
    rate_burst: int = 20  # bucket size
    max_concurrent_turns: int = 2  # per user (0 = off)
    daily_token_budget: int = 0  # input + output tokens per user per UTC day (0 = off)
    # What a user's model calls may cost per UTC day, in nano units of ``currency`` (the
    # catalogue's); 0 = off. Calls of models without prices cost nothing here.
    daily_cost_budget_nanos: int = 0
    currency: str = "USD"
    exempt_users: frozenset[str] = field(default_factory=frozenset)
    # Bytes of messages and attachments per user (0 = unlimited); the store enforces it.
    storage_quota_bytes: int = 0
    # A turn slot is held at most this long even if its holder vanished (crashed replica).
    turn_slot_ttl_seconds: float = 3600.0

    def budgets_apply(self, user_id: str) -> bool:
        """Whether a daily budget (tokens or money) holds this user."""
        budgeted = self.daily_token_budget > 0 or self.daily_cost_budget_nanos > 0
        return budgeted and user_id not in self.exempt_users


class Limiter(Protocol):
    async def check_rate(self, user_id: str) -> None:
        """Take one request from the user's bucket, or raise ResourceExhausted RATE_LIMITED."""
        ...

    def turn_slot(self, user_id: str) -> AbstractAsyncContextManager[None]:
        """Hold one of the user's concurrent-turn slots for the duration of a turn, or raise
        ResourceExhausted CONCURRENCY_LIMITED on entry."""
        ...

    async def check_budget(self, user_id: str) -> None:
        """Raise ResourceExhausted TOKEN_BUDGET_EXHAUSTED when today's tokens are spent,
        COST_BUDGET_EXHAUSTED when today's money is."""
        ...

    async def add_usage(self, user_id: str, tokens: int, cost_nanos: int = 0) -> None:
        """Count a turn's tokens and cost (nano units of the budget's currency) against
        today's budgets (called when a provider reports usage)."""
        ...

    def degraded(self) -> str | None:
        """Why the shared (Redis) limits are not in force right now; None when they are."""
        ...

    async def aclose(self) -> None: ...
