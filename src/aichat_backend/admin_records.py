"""What the operator API reads and changes, as plain data: the rate-limit bypass list, who
changed it, and usage reports. Below both the admin layer and the store (neither imports
the other for these)."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from aichat_backend.errors import InvalidArgument
from aichat_backend.money import Cost
from aichat_backend.reasons import Reason


class SubjectType(enum.Enum):
    USER = "user"
    API_KEY = "api_key"


@dataclass(frozen=True, slots=True)
class Bypass:
    id: str
    subject_type: SubjectType
    subject: str
    reason: str
    creator: str
    create_time_us: int


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is making a change, for the audit log."""

    user_id: str
    request_id: str = ""


DEFAULT_DAYS = 30
MAX_DAYS = 3660  # ten years: past that a typo, not a report


class Grouping(enum.Enum):
    USER_AND_MODEL = "user_and_model"
    USER = "user"
    MODEL = "model"


@dataclass(frozen=True, slots=True)
class UsageQuery:
    start_day: str  # YYYY-MM-DD, inclusive
    end_day: str  # YYYY-MM-DD, inclusive
    user_id: str = ""
    model: str = ""
    grouping: Grouping = Grouping.USER_AND_MODEL

    def key_columns(self) -> list[str]:
        return {
            Grouping.USER_AND_MODEL: ["user_id", "model"],
            Grouping.USER: ["user_id"],
            Grouping.MODEL: ["model"],
        }[self.grouping]

    def page_kind(self) -> str:
        """Names the list a page token belongs to: other filters, other list."""
        return "usage:" + "\x1f".join(
            [self.start_day, self.end_day, self.user_id, self.model, self.grouping.value]
        )


@dataclass(frozen=True, slots=True)
class UsageRow:
    user_id: str
    model: str
    input_tokens: int
    output_tokens: int
    model_calls: int  # the usage_daily column `turns` counts model calls
    reasoning_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cost: Cost | None = None  # None: nothing priced, or priced in several currencies


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """A user's usage over UTC days ``start_day`` to ``end_day``, every model together;
    ``cost`` counts the calls priced in the catalogue's currency."""

    start_day: str
    end_day: str
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    model_calls: int
    cost: Cost


@dataclass(frozen=True, slots=True)
class UserUsage:
    """What GetMyUsage answers: the user's own usage and the daily budgets that hold it
    (0 / None: unlimited for this user)."""

    today: UsageTotals
    this_month: UsageTotals
    daily_token_budget: int
    daily_cost_budget: Cost | None
    stored_bytes: int = 0  # messages and attachments stored now
    storage_quota_bytes: int = 0  # 0: unlimited


def _day(text: str, field: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(
            f"{field} must be a date like 2026-01-31, got {text[:40]!r}",
            reason=Reason.INVALID_DAY,
            field=field,
        ) from None


def make_query(
    start_day: str, end_day: str, user_id: str, model: str, grouping: Grouping, today: dt.date
) -> UsageQuery:
    """Defaults filled in (the last 30 days up to today) and the range checked."""
    end = _day(end_day, "end_day") if end_day else today
    start = _day(start_day, "start_day") if start_day else end - dt.timedelta(DEFAULT_DAYS - 1)
    if start > end:
        raise InvalidArgument(
            "start_day is after end_day", reason=Reason.INVALID_DAY_RANGE, field="start_day"
        )
    if (end - start).days >= MAX_DAYS:
        raise InvalidArgument(
            f"the range spans more than {MAX_DAYS} days",
            reason=Reason.INVALID_DAY_RANGE,
            field="start_day",
        )
    return UsageQuery(start.isoformat(), end.isoformat(), user_id, model, grouping)
