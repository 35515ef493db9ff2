"""A page's children: the attachments and tool calls of messages read without a join.

Two statements for any number of messages (never one per message); attachment content
only when the caller asks for it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import and_, bindparam, select

from aichat_backend.domain import Message, ToolCall
from aichat_backend.store.database import Tx
from aichat_backend.store.message_rows import to_attachment, to_tool_call
from aichat_backend.store.tables import attachments, tool_calls

_ATTACHMENT_COLUMNS = (
    attachments.c.message_id,
    attachments.c.filename,
    attachments.c.mime_type,
    attachments.c.size_bytes,
    attachments.c.sha256,
)


def _attachments_of(*extra: Any) -> Any:
    return (
        select(*_ATTACHMENT_COLUMNS, *extra)
        .where(attachments.c.message_id.in_(bindparam("p_ids", expanding=True)))
        .order_by(attachments.c.message_id, attachments.c.position)
    )


_ATTACHMENTS = _attachments_of()
_ATTACHMENTS_WITH_CONTENT = _attachments_of(attachments.c.content, attachments.c.text_content)
_TOOL_CALLS = (
    select(tool_calls)
    .where(
        and_(
            tool_calls.c.user_id == bindparam("p_user"),
            tool_calls.c.message_id.in_(bindparam("p_ids", expanding=True)),
        )
    )
    .order_by(tool_calls.c.message_id, tool_calls.c.position)
)


async def load_children(db: Tx, user_id: str, msgs: list[Message], *, with_content: bool) -> None:
    if not msgs:
        return
    by_id = {m.id: m for m in msgs}
    ids = list(by_id)
    query = _ATTACHMENTS_WITH_CONTENT if with_content else _ATTACHMENTS
    att_rows = (await db.execute(query, {"p_ids": ids})).mappings().all()
    for r in att_rows:
        by_id[r["message_id"]].attachments.append(to_attachment(r, "", with_content=with_content))
    params = {"p_user": user_id, "p_ids": ids}
    tc_rows = (await db.execute(_TOOL_CALLS, params)).mappings().all()
    grouped: dict[str, list[ToolCall]] = defaultdict(list)
    for r in tc_rows:
        grouped[r["message_id"]].append(to_tool_call(r, ""))
    for mid, calls in grouped.items():
        by_id[mid].tool_calls = calls
