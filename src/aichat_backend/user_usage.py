"""A user's own usage (SessionService.GetMyUsage): today and this month, the daily
budgets that hold them, and what they store against the storage quota. Operators read
everyone's through AdminService.ListUsage and ListUserStorage."""

from __future__ import annotations

import time
from collections.abc import Callable

from aichat_backend import days
from aichat_backend.admin_records import UserUsage
from aichat_backend.limits.base import LimitSettings
from aichat_backend.money import Cost
from aichat_backend.store import storage
from aichat_backend.store.database import Database
from aichat_backend.store.usage_report import user_totals


class UsageReader:
    def __init__(
        self, db: Database, limits: LimitSettings, *, wall: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._limits = limits
        self._wall = wall

    async def mine(self, user_id: str) -> UserUsage:
        today = days.utc_day(self._wall())
        month_start = today[:8] + "01"
        currency = self._limits.currency
        async with self._db.read() as tx:
            day = await user_totals(tx, user_id, today, today, currency)
            month = await user_totals(tx, user_id, month_start, today, currency)
            stored_bytes = await storage.stored(tx, user_id)
        limits = self._limits
        held = user_id not in limits.exempt_users
        cost_budget = limits.daily_cost_budget_nanos if held else 0
        return UserUsage(
            today=day,
            this_month=month,
            daily_token_budget=limits.daily_token_budget if held else 0,
            daily_cost_budget=Cost(cost_budget, currency) if cost_budget > 0 else None,
            stored_bytes=stored_bytes,
            storage_quota_bytes=limits.storage_quota_bytes if held else 0,
        )
