"""Rows ⇄ Message: a message with its feedback, attachments, tool calls, reasoning and
usage from columns, and an answer's reasoning and usage to columns.

Shared by every read in ``messages_repo``; the joined reads name child columns with an
``a_``/``t_`` prefix, the separate child reads with none.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.engine import RowMapping

from aichat_backend.domain import (
    Attachment,
    ContextSummary,
    Feedback,
    Message,
    MessageState,
    Rating,
    Role,
    ToolCall,
    ToolCallState,
)
from aichat_backend.money import Cost
from aichat_backend.providers.base import ReasoningBlock


def to_message(row: RowMapping) -> Message:
    return Message(
        session_id=row["session_id"],
        id=row["id"],
        seq=row["seq"],
        role=Role(row["role"]),
        text=row["text"],
        state=MessageState(row["state"]),
        model=row["model"],
        finish_reason=row["finish_reason"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        create_time_us=row["create_time_us"],
        feedback=feedback_of(row),
        reasoning=[ReasoningBlock.from_json(b) for b in row["reasoning"] or ()],
        reasoning_tokens=row["reasoning_tokens"],
        cached_input_tokens=row["cached_input_tokens"],
        cache_write_tokens=row["cache_write_tokens"],
        cost=cost_of(row),
        parent_id=row.get("parent_id") or "",
        # Only a listing's read has them (message_paths.py); every other read leaves the
        # defaults, which no caller of those reads looks at.
        sibling_index=row.get("sib_index") or 0,
        sibling_count=row.get("sib_count") or 1,
        previous_sibling=row.get("sib_prev") or "",
        next_sibling=row.get("sib_next") or "",
        context_summary=summary_of(row),
    )


def summary_of(row: RowMapping) -> ContextSummary | None:
    text = row.get("summary_text")
    if text is None:
        return None
    return ContextSummary.from_columns(text, row.get("summary_meta") or {})


# An answer's reasoning and usage beyond its totals, as an UPDATE's values and their
# parameters (``detail_params``).
DETAIL_VALUES: dict[str, Any] = {
    "reasoning": bindparam("p_reasoning"),
    "reasoning_tokens": bindparam("p_rsn"),
    "cached_input_tokens": bindparam("p_cin"),
    "cache_write_tokens": bindparam("p_cw"),
    "cost_nanos": bindparam("p_cost"),
    "currency": bindparam("p_cur"),
}


def detail_params(m: Message) -> dict[str, Any]:
    return {
        "p_reasoning": [b.to_json() for b in m.reasoning] if m.reasoning else None,
        "p_rsn": m.reasoning_tokens,
        "p_cin": m.cached_input_tokens,
        "p_cw": m.cache_write_tokens,
        "p_cost": m.cost.nanos if m.cost is not None else None,
        "p_cur": m.cost.currency if m.cost is not None else "",
    }


def cost_of(row: RowMapping) -> Cost | None:
    nanos = row["cost_nanos"]
    return None if nanos is None else Cost(nanos, row["currency"])


def feedback_of(row: RowMapping) -> Feedback | None:
    rating = row.get("feedback_rating")
    if rating is None:
        return None
    return Feedback(Rating(rating), row["feedback_comment"] or "", row["feedback_time_us"] or 0)


def to_attachment(row: RowMapping, prefix: str, *, with_content: bool) -> Attachment:
    """An attachment from its columns, named ``{prefix}filename`` and so on."""
    return Attachment(
        filename=row[f"{prefix}filename"],
        mime_type=row[f"{prefix}mime_type"],
        size_bytes=row[f"{prefix}size_bytes"],
        sha256=row[f"{prefix}sha256"],
        content=row[f"{prefix}content"] if with_content else None,
        text_content=row[f"{prefix}text_content"] if with_content else None,
    )


def to_tool_call(row: RowMapping, prefix: str) -> ToolCall:
    """A tool call from its columns, named ``{prefix}id`` and so on."""
    return ToolCall(
        id=row[f"{prefix}id"],
        tool_name=row[f"{prefix}tool_name"],
        arguments=dict(row[f"{prefix}arguments"] or {}),
        state=ToolCallState(row[f"{prefix}state"]),
        server=row[f"{prefix}server"],
        result_text=row[f"{prefix}result_text"],
        is_error=row[f"{prefix}is_error"],
        duration_ms=row[f"{prefix}duration_ms"],
        approval_reason=row[f"{prefix}approval_reason"],
    )


def with_children(rows: Iterable[RowMapping]) -> list[Message]:
    """Messages from rows of a message joined with its attachments and tool calls
    (``a_``/``t_`` columns), each child taken once, in row order."""
    by_id: dict[str, Message] = {}
    files: set[tuple[str, int]] = set()
    calls: set[tuple[str, str]] = set()
    for r in rows:
        m = by_id.get(r["id"])
        if m is None:
            m = by_id[r["id"]] = to_message(r)
        position = r["a_position"]
        if position is not None and (m.id, position) not in files:
            files.add((m.id, position))
            m.attachments.append(to_attachment(r, "a_", with_content=True))
        call_id = r["t_id"]
        if call_id is not None and (m.id, call_id) not in calls:
            calls.add((m.id, call_id))
            m.tool_calls.append(to_tool_call(r, "t_"))
    return list(by_id.values())
