"""What can be known of a session's messages without reading them: sizes, count, names.

A page of whole messages can be hundreds of megabytes (a message may hold 4 MB): so a
reader first asks the database how large the next messages are, then reads only as many
as fit its budget. Sizes follow ``engine.page_bytes.approximate_size`` (in characters),
computed by the database from the rows' lengths (``SessionStore.message_sizes``).
"""

from __future__ import annotations

from sqlalchemy import Text, and_, cast, func, select

from aichat_backend.records import SessionSummary
from aichat_backend.store.database import Tx
from aichat_backend.store.tables import attachments, messages, tool_calls

MESSAGE_OVERHEAD, TOOL_CALL_OVERHEAD, ATTACHMENT_OVERHEAD = 256, 128, 256


def _of_session(user_id: str, session_id: str) -> object:
    return and_(messages.c.user_id == user_id, messages.c.session_id == session_id)


async def sizes(
    db: Tx, user_id: str, session_id: str, after_seq: int | None, limit: int
) -> list[int]:
    """Approximate sizes of the next ``limit`` messages after ``after_seq``, in order."""
    calls = (
        select(
            func.coalesce(
                func.sum(
                    TOOL_CALL_OVERHEAD
                    + func.length(tool_calls.c.result_text)
                    + func.length(cast(tool_calls.c.arguments, Text))
                ),
                0,
            )
        )
        .where(and_(tool_calls.c.user_id == user_id, tool_calls.c.message_id == messages.c.id))
        .scalar_subquery()
    )
    files = select(func.count()).where(attachments.c.message_id == messages.c.id).scalar_subquery()
    query = select(
        MESSAGE_OVERHEAD + func.length(messages.c.text) + calls + ATTACHMENT_OVERHEAD * files
    ).where(_of_session(user_id, session_id))  # type: ignore[arg-type]
    if after_seq is not None:
        query = query.where(messages.c.seq > after_seq)
    rows = await db.execute(query.order_by(messages.c.seq).limit(limit))
    return [int(size) for (size,) in rows]


async def summary(db: Tx, user_id: str, session_id: str) -> SessionSummary:
    where = _of_session(user_id, session_id)
    count = await db.scalar(select(func.count()).select_from(messages).where(where))  # type: ignore[arg-type]
    models = await db.execute(
        select(messages.c.model).distinct().where(where, messages.c.model != "")  # type: ignore[arg-type]
    )
    tools = await db.execute(
        select(tool_calls.c.tool_name)
        .distinct()
        .where(and_(tool_calls.c.user_id == user_id, tool_calls.c.session_id == session_id))
    )
    return SessionSummary(
        count=int(count or 0),
        tools={name for (name,) in tools},
        models={model for (model,) in models},
    )
