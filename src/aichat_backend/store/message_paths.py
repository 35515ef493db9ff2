"""The statements that read a session's tree: a path from the root to a message, a
message's siblings, its newest descendant (a turn's context read is in ``context_path``).

A path is found by walking up ``parent_id`` from its last message with a recursive CTE
(SQLite and PostgreSQL alike): a message's ancestors always have smaller ``seq`` (a child
is stored after its parent), so a path in ``seq`` order is the conversation in order and
``seq`` stays the keyset of its pages. Built once at import, like ``context_queries``.
"""

from __future__ import annotations

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
    true,
)

from aichat_backend.domain import Role
from aichat_backend.store.message_stats import (
    ATTACHMENT_OVERHEAD,
    MESSAGE_OVERHEAD,
    TOOL_CALL_OVERHEAD,
)
from aichat_backend.store.tables import attachments, messages, sessions, tool_calls

P_USER = bindparam("p_user", type_=String)
P_SID = bindparam("p_sid", type_=String)
# The path's last message; NULL: the session's active message (read in the statement).
P_LEAF = bindparam("p_leaf", type_=String)

ACTIVE = (
    select(sessions.c.active_message_id)
    .where(and_(sessions.c.user_id == P_USER, sessions.c.id == P_SID))
    .scalar_subquery()
)


def least(a: Any, b: Any) -> Any:
    return case((a < b, a), else_=b)


def sibling_columns(m: Any) -> list[Any]:
    """A message's place among its siblings (same parent, oldest first) and its
    neighbours' ids, as correlated subqueries on the parent index: ``sib_index``,
    ``sib_count``, ``sib_prev``, ``sib_next`` (``message_rows.to_message`` reads them)."""

    def same(s: Any) -> Any:
        return and_(
            s.c.user_id == m.c.user_id,
            s.c.session_id == m.c.session_id,
            s.c.parent_id == m.c.parent_id,
        )

    s1, s2, s3, s4 = (messages.alias(f"sib{i}") for i in range(1, 5))
    return [
        select(func.count()).select_from(s1).where(same(s1), s1.c.seq < m.c.seq)
        .scalar_subquery().label("sib_index"),
        select(func.count()).select_from(s2).where(same(s2))
        .scalar_subquery().label("sib_count"),
        select(s3.c.id).where(same(s3), s3.c.seq < m.c.seq).order_by(s3.c.seq.desc()).limit(1)
        .scalar_subquery().label("sib_prev"),
        select(s4.c.id).where(same(s4), s4.c.seq > m.c.seq).order_by(s4.c.seq).limit(1)
        .scalar_subquery().label("sib_next"),
    ]  # fmt: skip


def path_up(
    anchor_where: Any, *, after: Any = None, depth_limit: Any = None, lateral: bool = False
) -> Any:
    """The CTE of a path: ``(id, seq, depth)`` from the anchor up to the root, pruned below
    ``after`` (a page's keyset) or past ``depth_limit`` messages (a context window).

    ``lateral`` (PostgreSQL): each step looks its parent up by primary key in a LATERAL
    subquery. Planned as a plain join, PostgreSQL hashes the user's whole table of messages
    at every step while the table is small enough to look cheap (measured: 2.4 ms for a
    20-message context in a 400-message session, against ~0.2 ms by key).
    """
    anchor = select(
        messages.c.id, messages.c.parent_id, messages.c.seq, literal(1, Integer).label("depth")
    ).where(anchor_where)
    if after is not None:
        anchor = anchor.where(messages.c.seq > after)
    path = anchor.cte("path", recursive=True)
    up: Any = messages.alias("up")
    if lateral:
        up = (
            select(up.c.id, up.c.parent_id, up.c.seq)
            .where(and_(up.c.id == path.c.parent_id, up.c.user_id == P_USER))
            .limit(1)
            .lateral("up_row")
        )
        step = (
            select(up.c.id, up.c.parent_id, up.c.seq, (path.c.depth + 1).label("depth"))
            .select_from(path.join(up, true()))
            .where(path.c.parent_id != "")
        )
    else:
        step = select(up.c.id, up.c.parent_id, up.c.seq, (path.c.depth + 1).label("depth")).where(
            and_(up.c.id == path.c.parent_id, up.c.user_id == P_USER, path.c.parent_id != "")
        )
    if after is not None:
        step = step.where(up.c.seq > after)
    if depth_limit is not None:
        step = step.where(path.c.depth < depth_limit)
    return path.union_all(step)


OF_SESSION = and_(messages.c.user_id == P_USER, messages.c.session_id == P_SID)

# --- a page of a path (ListMessages): one statement -----------------------------------
#
# The session (its active message), the page's messages with their sibling positions,
# attachments (no content) and tool calls, bounded by count and by size (the same
# estimate as message_stats.sizes, summed in order by a window) — all in one statement.
_P_AFTER = bindparam("p_after", type_=BigInteger)
_PAGE_PATH = path_up(
    and_(OF_SESSION, messages.c.id == func.coalesce(P_LEAF, ACTIVE)), after=_P_AFTER
)
_CALLS_SIZE = (
    select(
        func.coalesce(
            func.sum(
                TOOL_CALL_OVERHEAD
                + func.length(tool_calls.c.result_text)
                + func.length(cast(tool_calls.c.arguments, String))
            ),
            0,
        )
    )
    .where(and_(tool_calls.c.user_id == P_USER, tool_calls.c.message_id == messages.c.id))
    .scalar_subquery()
)
_FILES = select(func.count()).where(attachments.c.message_id == messages.c.id).scalar_subquery()
_SIZE = MESSAGE_OVERHEAD + func.length(messages.c.text) + _CALLS_SIZE + ATTACHMENT_OVERHEAD * _FILES
# Each size is computed once (a length reads the whole text), then summed in order.
_SIZES = (
    select(messages.c.id, messages.c.seq, _SIZE.label("size"))
    .select_from(_PAGE_PATH.join(messages, messages.c.id == _PAGE_PATH.c.id))
    .cte("sizes")
)
_SIZED = select(
    _SIZES.c.id,
    func.sum(_SIZES.c.size).over(order_by=_SIZES.c.seq).label("running"),
    func.row_number().over(order_by=_SIZES.c.seq).label("n"),
    func.count().over().label("total"),
).cte("sized")
_PAGE = (
    select(messages, *sibling_columns(messages), _SIZED.c.n.label("path_n"),
           _SIZED.c.total.label("path_total"))
    .select_from(_SIZED.join(messages, messages.c.id == _SIZED.c.id))
    .where(
        and_(
            _SIZED.c.n <= bindparam("p_limit", type_=Integer),
            or_(_SIZED.c.running <= bindparam("p_max", type_=BigInteger), _SIZED.c.n == 1),
        )
    )
    .subquery("pg")
)  # fmt: skip
PATH_PAGE = (
    select(
        sessions.c.active_message_id.label("s_active"),
        _PAGE,
        attachments.c.position.label("a_position"),
        attachments.c.filename.label("a_filename"),
        attachments.c.mime_type.label("a_mime_type"),
        attachments.c.size_bytes.label("a_size_bytes"),
        attachments.c.sha256.label("a_sha256"),
        literal(None).label("a_content"),
        literal(None).label("a_text_content"),
        *(c.label(f"t_{c.name}") for c in tool_calls.c if c.name not in ("message_id",)),
    )
    .select_from(
        sessions.outerjoin(_PAGE, true())
        .outerjoin(attachments, attachments.c.message_id == _PAGE.c.id)
        .outerjoin(
            tool_calls, and_(tool_calls.c.message_id == _PAGE.c.id, tool_calls.c.user_id == P_USER)
        )
    )
    .where(and_(sessions.c.user_id == P_USER, sessions.c.id == P_SID))
    .order_by(_PAGE.c.seq, attachments.c.position, tool_calls.c.position)
)

# --- a message's newest descendant (SwitchBranch, ListMessages' ``branch``) -------------
#
# A child is always newer than its parent, so the newest message of a subtree is a leaf:
# the end of the branch through the message that was written last.
_P_MESSAGE = bindparam("p_message", type_=String)
_down_anchor = select(messages.c.id, messages.c.seq).where(
    and_(OF_SESSION, messages.c.id == _P_MESSAGE)
)
_DOWN = _down_anchor.cte("down", recursive=True)
_child = messages.alias("child")
_DOWN = _DOWN.union_all(
    select(_child.c.id, _child.c.seq).where(
        and_(
            _child.c.user_id == P_USER,
            _child.c.session_id == P_SID,
            _child.c.parent_id == _DOWN.c.id,
        )
    )
)
NEWEST_DESCENDANT = select(_DOWN.c.id).order_by(_DOWN.c.seq.desc()).limit(1)

# --- the nearest user message at or above a message (RegenerateAnswer) ------------------
_ASK = path_up(and_(OF_SESSION, messages.c.id == _P_MESSAGE))
QUESTION_OF = (
    select(messages.c.id, messages.c.role, _ASK.c.depth)
    .select_from(_ASK.join(messages, messages.c.id == _ASK.c.id))
    .where(messages.c.role == Role.USER.value)
    .order_by(_ASK.c.depth)
    .limit(1)
)

# --- a turn's answers: the first one and each later round, its child ---------------------
_P_FIRST = bindparam("p_first", type_=String)
_ROUNDS = (
    select(messages.c.id, messages.c.seq)
    .where(and_(messages.c.user_id == P_USER, messages.c.id == _P_FIRST))
    .cte("rounds", recursive=True)
)
_next = messages.alias("next_round")
_ROUNDS = _ROUNDS.union_all(
    select(_next.c.id, _next.c.seq).where(
        and_(
            _next.c.user_id == P_USER,
            _next.c.parent_id == _ROUNDS.c.id,
            _next.c.role == Role.ASSISTANT.value,
        )
    )
)
TURN_ROUNDS = select(_ROUNDS.c.id).order_by(_ROUNDS.c.seq)
