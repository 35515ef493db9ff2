"""The statements of a turn's context read: the last messages with their files and calls.

Built once at import (see sessions_repo._GET); ``MessageRepository.context`` and
``recent`` run them and ``message_rows.with_children`` reads their rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, and_, bindparam, case, func, select, true

from aichat_backend.store.tables import attachments, messages, sessions, tool_calls


# The history read of every turn: the last messages with their attachments and tool
# calls in one statement, not three. A message has one
# kind of child or none (user messages carry files, answers carry calls); rows repeat
# only if one had both, and with_children() takes each child once either way.
def attachment_columns() -> list[Any]:
    """A message's file in a context row, under the names ``with_children`` reads."""
    names = ("position", "filename", "mime_type", "size_bytes", "sha256", "content")
    return [attachments.c[n].label(f"a_{n}") for n in (*names, "text_content")]


_WINDOW = (
    select(messages)
    .where(
        and_(messages.c.user_id == bindparam("p_user"), messages.c.session_id == bindparam("p_sid"))
    )
    .order_by(messages.c.seq.desc())
    .limit(bindparam("p_limit", type_=Integer))
    .subquery("w")
)
RECENT = (
    select(
        _WINDOW,
        *attachment_columns(),
        tool_calls.c.id.label("t_id"),
        tool_calls.c.tool_name.label("t_tool_name"),
        tool_calls.c.arguments.label("t_arguments"),
        tool_calls.c.state.label("t_state"),
        tool_calls.c.server.label("t_server"),
        tool_calls.c.result_text.label("t_result_text"),
        tool_calls.c.is_error.label("t_is_error"),
        tool_calls.c.duration_ms.label("t_duration_ms"),
        tool_calls.c.approval_reason.label("t_approval_reason"),
    )
    .select_from(
        _WINDOW.outerjoin(attachments, attachments.c.message_id == _WINDOW.c.id).outerjoin(
            tool_calls,
            and_(
                tool_calls.c.message_id == _WINDOW.c.id,
                tool_calls.c.user_id == bindparam("p_user"),
            ),
        )
    )
    .order_by(_WINDOW.c.seq, attachments.c.position, tool_calls.c.position)
)
# PostgreSQL only: a turn's whole context read, the session and its last messages (with
# files and calls), in one statement instead of two round trips. The window is
# domain.memory_window with the session's own limit read in the same statement.
_P_REQUESTED = bindparam("p_requested", type_=Integer)
_P_MAX = bindparam("p_max", type_=Integer)
_CONTEXT_WINDOW = (
    select(messages)
    .where(and_(messages.c.user_id == sessions.c.user_id, messages.c.session_id == sessions.c.id))
    .order_by(messages.c.seq.desc())
    .limit(
        case(
            (_P_REQUESTED > 0, func.least(_P_REQUESTED, _P_MAX)),
            (sessions.c.memory_limit > 0, func.least(sessions.c.memory_limit, _P_MAX)),
            else_=func.least(bindparam("p_default", type_=Integer), _P_MAX),
        )
    )
    .lateral("w")
)
CONTEXT = (
    select(
        *(c.label(f"s_{c.name}") for c in sessions.c),
        _CONTEXT_WINDOW,
        *(c for c in RECENT.selected_columns if c.name.startswith(("a_", "t_"))),
    )
    .select_from(
        sessions.outerjoin(_CONTEXT_WINDOW, true())
        .outerjoin(attachments, attachments.c.message_id == _CONTEXT_WINDOW.c.id)
        .outerjoin(
            tool_calls,
            and_(
                tool_calls.c.message_id == _CONTEXT_WINDOW.c.id,
                tool_calls.c.user_id == bindparam("p_user"),
            ),
        )
    )
    .where(and_(sessions.c.user_id == bindparam("p_user"), sessions.c.id == bindparam("p_sid")))
    .order_by(_CONTEXT_WINDOW.c.seq, attachments.c.position, tool_calls.c.position)
)
