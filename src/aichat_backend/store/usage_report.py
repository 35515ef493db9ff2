"""Token usage over a range of UTC days, grouped by user and/or model, one page at a time.

Reads the ``usage_daily`` rows the turns write (store/usage_repo.py). Pages are keyset
on the group's key (user id, model), never offsets: rows added while an operator pages
cannot shift what the next page shows.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from aichat_backend.errors import InvalidArgument
from aichat_backend.reasons import Reason
from aichat_backend.store.database import Tx
from aichat_backend.store.tables import usage_daily

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


def _after(columns: list[ColumnElement[str]], keys: list[str]) -> ColumnElement[bool]:
    """(a, b) > (x, y) spelt portably."""
    if len(columns) == 1:
        return columns[0] > keys[0]
    return or_(columns[0] > keys[0], and_(columns[0] == keys[0], columns[1] > keys[1]))


async def usage_page(tx: Tx, q: UsageQuery, limit: int, after: list[str] | None) -> list[UsageRow]:
    c = usage_daily.c
    keys: list[ColumnElement[str]] = [c[name] for name in q.key_columns()]
    query = select(
        *keys,
        func.sum(c.input_tokens),
        func.sum(c.output_tokens),
        func.sum(c.turns),
    ).where(c.day >= q.start_day, c.day <= q.end_day)
    if q.user_id:
        query = query.where(c.user_id == q.user_id)
    if q.model:
        query = query.where(c.model == q.model)
    if after is not None:
        query = query.where(_after(keys, after))
    query = query.group_by(*keys).order_by(*keys).limit(limit)
    rows = []
    n = len(keys)
    for r in await tx.execute(query):
        named = dict(zip(q.key_columns(), r[:n], strict=True))
        rows.append(
            UsageRow(
                user_id=named.get("user_id", ""),
                model=named.get("model", ""),
                input_tokens=int(r[n] or 0),
                output_tokens=int(r[n + 1] or 0),
                model_calls=int(r[n + 2] or 0),
            )
        )
    return rows


def row_key(q: UsageQuery, row: UsageRow) -> list[str]:
    return [row.user_id if name == "user_id" else row.model for name in q.key_columns()]
