"""Usage per user, model and UTC day: recorded whether or not a budget is set.

One row per (user, day, model) adds up every model call's tokens, their reasoning and
prompt-cache parts, and their cost in nano units (``money``) of the catalogue's currency.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from aichat_backend import days
from aichat_backend.money import MIXED_CURRENCY
from aichat_backend.records import Usage
from aichat_backend.store.database import Tx
from aichat_backend.store.tables import usage_daily

# The counting columns, each added to on conflict: (column, its parameter's suffix).
_COUNTS = (
    ("input_tokens", "in"),
    ("output_tokens", "out"),
    ("reasoning_tokens", "rsn"),
    ("cached_input_tokens", "cin"),
    ("cache_write_tokens", "cw"),
    ("cost_nanos", "cost"),
)


def utc_day(now: dt.datetime | None = None) -> str:
    return days.utc_day(now.timestamp() if now is not None else time.time())


def usage_upsert(dialect: str, prefix: str = "p_", only_with: Any = None) -> Any:
    """The upsert with bind parameters ``{prefix}user``, ``day``, ``model``, ``cur`` and
    the counts of ``_COUNTS`` (a prefix of its own when it joins other statements in one).

    ``only_with``: a CTE; the usage is added only when it returned a row (so a write
    that lands at most once counts its usage at most once).
    """
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    params = {
        "user_id": (f"{prefix}user", String),
        "day": (f"{prefix}day", String),
        "model": (f"{prefix}model", String),
        "currency": (f"{prefix}cur", String),
        **{name: (f"{prefix}{suffix}", BigInteger) for name, suffix in _COUNTS},
    }
    if only_with is None:
        values: dict[str, Any] = {name: bindparam(param) for name, (param, _) in params.items()}
        stmt = insert(usage_daily).values(**values, turns=1)
    else:
        row: Any = select(
            *(cast(bindparam(param), kind) for param, kind in params.values()),
            literal(1, Integer),
        ).select_from(only_with)
        stmt = insert(usage_daily).from_select([*params, "turns"], row)
    c, new = usage_daily.c, stmt.excluded
    changes: dict[str, Any] = {name: c[name] + new[name] for name, _ in _COUNTS}
    changes["turns"] = c.turns + 1
    # A row's cost is in one currency: an unpriced call leaves it as it is, and a call
    # priced in another currency (the catalogue's changed that day) marks it mixed.
    changes["currency"] = case(
        (new.currency == "", c.currency),
        (or_(c.currency == "", c.currency == new.currency), new.currency),
        else_=MIXED_CURRENCY,
    )
    return stmt.on_conflict_do_update(index_elements=["user_id", "day", "model"], set_=changes)


# Built once per dialect (see sessions_repo._GET): every model call runs it.
_UPSERTS = {dialect: usage_upsert(dialect) for dialect in ("postgresql", "sqlite")}


def usage_params(user_id: str, usage: Usage, prefix: str = "p_") -> dict[str, Any]:
    cost = usage.cost
    return {
        f"{prefix}user": user_id,
        f"{prefix}day": utc_day(),
        f"{prefix}model": usage.model[:200],
        f"{prefix}cur": cost.currency if cost is not None else "",
        f"{prefix}in": usage.input_tokens,
        f"{prefix}out": usage.output_tokens,
        f"{prefix}rsn": usage.reasoning_tokens,
        f"{prefix}cin": usage.cached_input_tokens,
        f"{prefix}cw": usage.cache_write_tokens,
        f"{prefix}cost": cost.nanos if cost is not None else 0,
    }


async def add_usage(db: Tx, user_id: str, usage: Usage) -> None:
    """Add one model call's usage (an upsert: one row per user, day and model)."""
    await db.execute(_UPSERTS[db.dialect.name], usage_params(user_id, usage))


async def tokens_today(db: Tx, user_id: str) -> int:
    total = await db.scalar(
        select(
            func.coalesce(func.sum(usage_daily.c.input_tokens + usage_daily.c.output_tokens), 0)
        ).where(and_(usage_daily.c.user_id == user_id, usage_daily.c.day == utc_day()))
    )
    return int(total or 0)
