"""The statements of a turn's first and last writes (``answers_repo`` runs them).

Built once at import (see sessions_repo._GET). On PostgreSQL the first and the last write
of a common turn are one statement each: data-modifying CTEs that carry the lease's claim
and release from ``turn_leases``, the usage row (``usage_repo``) and the user's storage
count (``storage``).
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
from aichat_backend.store import storage
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
# first token instead of four. The claim is taken only within the storage quota, and the
# user message's bytes are counted from the claim's row (``storage``).
_CLAIMED = BEGIN.where(
    storage.stored_now() + bindparam("p_size", type_=BigInteger)
    <= bindparam("p_quota", type_=BigInteger)
).cte("claimed")
_COUNTED = storage.add_from(_CLAIMED, cast(bindparam("p_size"), BigInteger)).cte("counted")


def _turn_row(
    id_param: str,
    seq_back: int,
    role: Role,
    text: Any,
    state: MessageState,
    model: Any,
    parent_param: str,
    size: Any,
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
        size,
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
            messages.c.stored_bytes,
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
                cast(bindparam("p_size"), BigInteger),
            ),
            _turn_row(
                "p_answer",
                0,
                Role.ASSISTANT,
                literal("", Text),
                MessageState.STREAMING,
                cast(bindparam("p_model"), String),
                "p_user_msg",
                literal(0, BigInteger),
            ),
        ),
        # The columns left out start as their server defaults (no reasoning, no usage).
        include_defaults=False,
    )
    .returning(messages.c.seq)
    .add_cte(_COUNTED)
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
        stored_bytes=bindparam("p_size"),
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
UNFINISHED = (MessageState.STREAMING.value, MessageState.INTERRUPTED.value)
FINISH_ANSWER = WRITE_ANSWER.where(or_(*(messages.c.state == s for s in UNFINISHED)))
_ANSWER_CTE = FINISH_ANSWER.returning(messages.c.id, messages.c.stored_bytes).cte("answer")
# What the answer's row counted before (the statement's snapshot); the difference is
# added only if the answer landed.
_BEFORE = (
    select(messages.c.id, messages.c.stored_bytes)
    .where(and_(messages.c.user_id == bindparam("p_user"), messages.c.id == bindparam("p_id")))
    .cte("before")
)
_ANSWER_COUNTED = storage.add_from(
    _ANSWER_CTE.join(_BEFORE, _BEFORE.c.id == _ANSWER_CTE.c.id),
    _ANSWER_CTE.c.stored_bytes - _BEFORE.c.stored_bytes,
).cte("answer_counted")
FINISH_ONE_STATEMENT = {
    True: usage_upsert("postgresql", prefix="u_", only_with=_ANSWER_CTE).add_cte(
        _ANSWER_CTE, RELEASE.returning(sessions.c.id).cte("released"), _ANSWER_COUNTED
    ),
    False: RELEASE.add_cte(_ANSWER_CTE, _ANSWER_COUNTED),
}
