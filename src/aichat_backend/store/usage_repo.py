"""Token usage per user, model and UTC day: recorded whether or not a budget is set."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite

from aichat_backend.limits import refusals
from aichat_backend.store.database import Tx
from aichat_backend.store.tables import usage_daily


def utc_day(now: dt.datetime | None = None) -> str:
    return refusals.utc_day(now.timestamp() if now is not None else time.time())


def _upsert(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(usage_daily).values(
        user_id=bindparam("p_user"),
        day=bindparam("p_day"),
        model=bindparam("p_model"),
        input_tokens=bindparam("p_in"),
        output_tokens=bindparam("p_out"),
        turns=1,
    )
    return stmt.on_conflict_do_update(
        index_elements=["user_id", "day", "model"],
        set_={
            "input_tokens": usage_daily.c.input_tokens + stmt.excluded.input_tokens,
            "output_tokens": usage_daily.c.output_tokens + stmt.excluded.output_tokens,
            "turns": usage_daily.c.turns + 1,
        },
    )


# Built once per dialect (see sessions_repo._GET): every model call runs it.
_UPSERTS = {dialect: _upsert(dialect) for dialect in ("postgresql", "sqlite")}


async def add_usage(
    db: Tx, user_id: str, model: str, input_tokens: int, output_tokens: int
) -> None:
    """Add one model call's tokens (an upsert: one row per user, day and model)."""
    params = {
        "p_user": user_id,
        "p_day": utc_day(),
        "p_model": model[:200],
        "p_in": input_tokens,
        "p_out": output_tokens,
    }
    await db.execute(_UPSERTS[db.dialect.name], params)


async def tokens_today(db: Tx, user_id: str) -> int:
    total = await db.scalar(
        select(
            func.coalesce(func.sum(usage_daily.c.input_tokens + usage_daily.c.output_tokens), 0)
        ).where(and_(usage_daily.c.user_id == user_id, usage_daily.c.day == utc_day()))
    )
    return int(total or 0)
