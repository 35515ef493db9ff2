"""A turn's context as one statement: the session, and the last messages of the path
to a message with their files (content included) and tool calls.

PostgreSQL looks each ancestor and message up by key (LATERAL, see ``path_up``);
SQLite's planner does by itself. The path's shared parts are in ``message_paths``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, and_, bindparam, case, func, select, true

from aichat_backend.store.context_queries import attachment_columns
from aichat_backend.store.message_paths import (
    ACTIVE,
    OF_SESSION,
    P_LEAF,
    P_SID,
    P_USER,
    least,
    path_up,
)
from aichat_backend.store.tables import attachments, messages, sessions, tool_calls

# --- a turn's context: the last messages of the path to a message, with file content ---
#
# One statement on both databases: the session, and up to domain.memory_window messages
# of the path ending at ``p_leaf`` (the session's active message when NULL; none when
# ''), with attachments (content included) and tool calls. The window is computed in the
# statement from the session's own limit, as domain.memory_window does (plus ``p_extra``).
_P_REQUESTED = bindparam("p_requested", type_=Integer)
_P_MAX = bindparam("p_max", type_=Integer)
_WINDOW = (
    select(
        case(
            (_P_REQUESTED > 0, least(_P_REQUESTED, _P_MAX)),
            (sessions.c.memory_limit > 0, least(sessions.c.memory_limit, _P_MAX)),
            else_=least(bindparam("p_default", type_=Integer), _P_MAX),
        )
    )
    .where(and_(sessions.c.user_id == P_USER, sessions.c.id == P_SID))
    .scalar_subquery()
)
_DEPTH = _WINDOW + bindparam("p_extra", type_=Integer)


def _context_path(lateral: bool) -> Any:
    path = path_up(
        and_(OF_SESSION, messages.c.id == func.coalesce(P_LEAF, ACTIVE), _DEPTH > 0),
        depth_limit=_DEPTH,
        lateral=lateral,
    )
    found: Any
    if lateral:  # each message by key (see path_up)
        row = select(messages).where(messages.c.id == path.c.id).limit(1).lateral("row")
        found = select(row).select_from(path.join(row, true())).subquery("w")
    else:
        joined = path.join(messages, messages.c.id == path.c.id)
        found = select(messages).select_from(joined).subquery("w")
    return (
        select(
            *(c.label(f"s_{c.name}") for c in sessions.c),
            found,
            *attachment_columns(),
            *(c.label(f"t_{c.name}") for c in tool_calls.c if c.name not in ("message_id",)),
        )
        .select_from(
            sessions.outerjoin(found, true())
            .outerjoin(attachments, attachments.c.message_id == found.c.id)
            .outerjoin(
                tool_calls,
                and_(tool_calls.c.message_id == found.c.id, tool_calls.c.user_id == P_USER),
            )
        )
        .where(and_(sessions.c.user_id == P_USER, sessions.c.id == P_SID))
        .order_by(found.c.seq, attachments.c.position, tool_calls.c.position)
    )


CONTEXT_PATH = {"sqlite": _context_path(lateral=False), "postgresql": _context_path(lateral=True)}
