"""The statements of a turn's first and last writes (``answers_repo`` runs them).

Built once at import (see sessions_repo._GET). On PostgreSQL the first and the last write
of a common turn are one statement each: data-modifying CTEs that carry the lease's claim
and release from ``turn_leases``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)

from aichat_backend.domain import MessageState, Role
from aichat_backend.store.message_rows import DETAIL_VALUES
from aichat_backend.store.tables import messages, sessions
from aichat_backend.store.turn_leases import RELEASE, THIS_SESSION, claimable
from aichat_backend.store.usage_repo import usage_upsert

BEGIN = (
    update(sessions)
    .where(and_(THIS_SESSION, claimable(bindparam("p_now"))))
    .values(
        active_turn_id=bindparam("p_turn"),
        active_turn_owner=bindparam("p_owner"),
        active_turn_expires_us=bindparam("p_expires"),
        last_seq=sessions.c.last_seq + bindparam("p_added"),
        message_count=sessions.c.message_count + bindparam("p_added"),
        update_time_us=bindparam("p_now"),
        tools_locked=True,
        # The user acted here: the new answer ends the active path.
        active_message_id=bindparam("p_answer"),
        # The first message names an untitled session.
        display_name=case(
            (sessions.c.display_name == "", bindparam("p_title")), else_=sessions.c.display_name
        ),
    )
    .returning(sessions.c.last_seq)
)

# PostgreSQL only: the claim and both messages in one statement (a data-modifying CTE),
# which is atomic by itself, so it needs no BEGIN and COMMIT: one round trip before the
# first token instead of four.
_CLAIMED = BEGIN.cte("claimed")


def _turn_row(
    id_param: str,
    seq_back: int,
    role: Role,
    text: Any,
    state: MessageState,
    model: Any,
    parent_param: str,
) -> Any:
    claimed = _CLAIMED.c.last_seq
    return select(
        cast(bindparam(id_param), String),
        cast(bindparam("p_user"), String),
        cast(bindparam("p_sid"), String),
        claimed - seq_back,
        literal(role.value, String),
        text,
        literal(state.value, String),
        model,
        literal("", String),
        literal(0, BigInteger),
        literal(0, BigInteger),
        cast(bindparam("p_now"), BigInteger),
        cast(bindparam(parent_param), String),
    ).select_from(_CLAIMED)


BEGIN_ONE_STATEMENT = (
    insert(messages)
    .from_select(
        [
            messages.c.id,
            messages.c.user_id,
            messages.c.session_id,
            messages.c.seq,
            messages.c.role,
            messages.c.text,
            messages.c.state,
            messages.c.model,
            messages.c.finish_reason,
            messages.c.input_tokens,
            messages.c.output_tokens,
            messages.c.create_time_us,
            messages.c.parent_id,
        ],
        union_all(
            _turn_row(
                "p_user_msg",
                1,
                Role.USER,
                cast(bindparam("p_text"), Text),
                MessageState.COMPLETE,
                literal("", String),
                "p_parent",
            ),
            _turn_row(
                "p_answer",
                0,
                Role.ASSISTANT,
                literal("", Text),
                MessageState.STREAMING,
                cast(bindparam("p_model"), String),
                "p_user_msg",
            ),
        ),
        # The columns left out start as their server defaults (no reasoning, no usage).
        include_defaults=False,
    )
    .returning(messages.c.seq)
)
WRITE_ANSWER = (
    update(messages)
    .where(and_(messages.c.user_id == bindparam("p_user"), messages.c.id == bindparam("p_id")))
    .values(
        text=bindparam("p_text"),
        state=bindparam("p_state"),
        finish_reason=bindparam("p_finish"),
        input_tokens=bindparam("p_in"),
        output_tokens=bindparam("p_out"),
        model=bindparam("p_model"),
        **DETAIL_VALUES,
    )
)

# PostgreSQL only: a finished turn's answer, the session's release and the usage row
# in one statement (data-modifying CTEs run whether or not the main part reads them),
# atomic by itself: one round trip instead of five.
# The last write moves an answer still being written (or marked INTERRUPTED by a sweep
# while the database was away) and nothing else: sent again after a failure whose
# outcome is unknown (a COMMIT delayed in a black-holed network may still land), it
# lands once, and its usage with it.
# (Two comparisons rather than IN: an IN list is expanded at every execution.)
FINISH_ANSWER = WRITE_ANSWER.where(
    or_(
        messages.c.state == MessageState.STREAMING.value,
        messages.c.state == MessageState.INTERRUPTED.value,
    )
)
_ANSWER_CTE = FINISH_ANSWER.returning(messages.c.id).cte("answer")
FINISH_ONE_STATEMENT = {
    True: usage_upsert("postgresql", prefix="u_", only_with=_ANSWER_CTE).add_cte(
        _ANSWER_CTE, RELEASE.returning(sessions.c.id).cte("released")
    ),
    False: RELEASE.add_cte(_ANSWER_CTE),
}
