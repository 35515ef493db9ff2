"""Usage over a range of UTC days, grouped by user and/or model, one page at a time; and
one user's totals (their own usage).

Reads the ``usage_daily`` rows the turns write (store/usage_repo.py). Pages are keyset
on the group's key (user id, model), never offsets: rows added while an operator pages
cannot shift what the next page shows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from aichat_backend.admin_records import UsageQuery, UsageRow, UsageTotals
from aichat_backend.money import MIXED_CURRENCY, Cost
from aichat_backend.store.database import Tx
from aichat_backend.store.tables import usage_daily

_PARTS = ("reasoning_tokens", "cached_input_tokens", "cache_write_tokens")


def _after(columns: list[ColumnElement[str]], keys: list[str]) -> ColumnElement[bool]:
    """(a, b) > (x, y) spelt portably."""
    if len(columns) == 1:
        return columns[0] > keys[0]
    return or_(columns[0] > keys[0], and_(columns[0] == keys[0], columns[1] > keys[1]))


def _sums() -> list[Any]:
    c = usage_daily.c
    return [
        func.sum(c.input_tokens),
        func.sum(c.output_tokens),
        func.sum(c.turns),
        *(func.sum(c[name]) for name in _PARTS),
    ]


async def usage_page(tx: Tx, q: UsageQuery, limit: int, after: list[str] | None) -> list[UsageRow]:
    c = usage_daily.c
    keys: list[ColumnElement[str]] = [c[name] for name in q.key_columns()]
    priced = func.nullif(c.currency, "")
    query = select(
        *keys, *_sums(), func.sum(c.cost_nanos), func.min(priced), func.max(priced)
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
        counts = [int(v or 0) for v in r[n : n + 6]]
        nanos, lowest, highest = int(r[n + 6] or 0), r[n + 7], r[n + 8]
        # One currency or no cost: amounts of two currencies are not a sum of money.
        single = lowest is not None and lowest == highest and lowest != MIXED_CURRENCY
        rows.append(
            UsageRow(
                user_id=named.get("user_id", ""),
                model=named.get("model", ""),
                input_tokens=counts[0],
                output_tokens=counts[1],
                model_calls=counts[2],
                reasoning_tokens=counts[3],
                cached_input_tokens=counts[4],
                cache_write_tokens=counts[5],
                cost=Cost(nanos, lowest) if single else None,
            )
        )
    return rows


def row_key(q: UsageQuery, row: UsageRow) -> list[str]:
    return [row.user_id if name == "user_id" else row.model for name in q.key_columns()]


async def user_totals(
    tx: Tx, user_id: str, start_day: str, end_day: str, currency: str
) -> UsageTotals:
    """The user's usage over the days, every model together; cost in ``currency``."""
    c = usage_daily.c
    query = select(*_sums(), func.sum(case((c.currency == currency, c.cost_nanos), else_=0))).where(
        c.user_id == user_id, c.day >= start_day, c.day <= end_day
    )
    row = (await tx.execute(query)).one()
    counts = [int(v or 0) for v in row]
    return UsageTotals(
        start_day=start_day,
        end_day=end_day,
        input_tokens=counts[0],
        output_tokens=counts[1],
        model_calls=counts[2],
        reasoning_tokens=counts[3],
        cached_input_tokens=counts[4],
        cache_write_tokens=counts[5],
        cost=Cost(counts[6], currency),
    )
