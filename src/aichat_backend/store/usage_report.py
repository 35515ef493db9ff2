"""Token usage over a range of UTC days, grouped by user and/or model, one page at a time.

Reads the ``usage_daily`` rows the turns write (store/usage_repo.py). Pages are keyset
on the group's key (user id, model), never offsets: rows added while an operator pages
cannot shift what the next page shows.
"""

from __future__ import annotations

from sqlalchemy import and_, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from aichat_backend.admin_records import UsageQuery, UsageRow
from aichat_backend.store.database import Tx
from aichat_backend.store.tables import usage_daily


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
                turns=int(r[n + 2] or 0),
            )
        )
    return rows


def row_key(q: UsageQuery, row: UsageRow) -> list[str]:
    return [row.user_id if name == "user_id" else row.model for name in q.key_columns()]
