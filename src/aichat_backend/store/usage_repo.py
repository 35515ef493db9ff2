"""Token usage per user, model and UTC day: recorded whether or not a budget is set."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sqlalchemy import BigInteger, Integer, String, and_, bindparam, cast, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite

from aichat_backend import days
from aichat_backend.store.database import Tx
from aichat_backend.store.tables import usage_daily


def utc_day(now: dt.datetime | None = None) -> str:
    return days.utc_day(now.timestamp() if now is not None else time.time())


def usage_upsert(dialect: str, prefix: str = "p_", only_with: Any = None) -> Any:
    """The upsert with bind parameters ``{prefix}user``, ``day``, ``model``, ``in``, ``out``
    (a prefix of its own when it joins other statements in one).

    ``only_with``: a CTE; the usage is added only when it returned a row (so a write
    that lands at most once counts its usage at most once).
    """
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    if only_with is None:
        stmt = insert(usage_daily).values(
            user_id=bindparam(f"{prefix}user"),
            day=bindparam(f"{prefix}day"),
            model=bindparam(f"{prefix}model"),
            input_tokens=bindparam(f"{prefix}in"),
            output_tokens=bindparam(f"{prefix}out"),
            turns=1,
        )
    else:
        row = select(
            cast(bindparam(f"{prefix}user"), String),
            cast(bindparam(f"{prefix}day"), String),
            cast(bindparam(f"{prefix}model"), String),
            cast(bindparam(f"{prefix}in"), BigInteger),
            cast(bindparam(f"{prefix}out"), BigInteger),
            literal(1, Integer),
        ).select_from(only_with)
        columns = ["user_id", "day", "model", "input_tokens", "output_tokens", "turns"]
        stmt = insert(usage_daily).from_select(columns, row)
    return stmt.on_conflict_do_update(
        index_elements=["user_id", "day", "model"],
        set_={
            "input_tokens": usage_daily.c.input_tokens + stmt.excluded.input_tokens,
            "output_tokens": usage_daily.c.output_tokens + stmt.excluded.output_tokens,
            "turns": usage_daily.c.turns + 1,
        },
    )


# Built once per dialect (see sessions_repo._GET): every model call runs it.
_UPSERTS = {dialect: usage_upsert(dialect) for dialect in ("postgresql", "sqlite")}


def usage_params(
    user_id: str, model: str, input_tokens: int, output_tokens: int, prefix: str = "p_"
) -> dict[str, Any]:
    return {
        f"{prefix}user": user_id,
        f"{prefix}day": utc_day(),
        f"{prefix}model": model[:200],
        f"{prefix}in": input_tokens,
        f"{prefix}out": output_tokens,
    }


async def add_usage(
    db: Tx, user_id: str, model: str, input_tokens: int, output_tokens: int
) -> None:
    """Add one model call's tokens (an upsert: one row per user, day and model)."""
    params = usage_params(user_id, model, input_tokens, output_tokens)
    await db.execute(_UPSERTS[db.dialect.name], params)


async def tokens_today(db: Tx, user_id: str) -> int:
    total = await db.scalar(
        select(
            func.coalesce(func.sum(usage_daily.c.input_tokens + usage_daily.c.output_tokens), 0)
        ).where(and_(usage_daily.c.user_id == user_id, usage_daily.c.day == utc_day()))
    )
    return int(total or 0)
