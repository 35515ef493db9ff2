"""A turn's messages: the user's message, the answer of each round, the turn's result.

The user message is stored with a placeholder answer in one write overlapped with the
upstream request (which also claims the session), and each answer is written once when
its round ends. Tokens are never written one by one. On PostgreSQL the first and the last
write of a common turn are one statement each (data-modifying CTEs that carry the
lease's claim and release from ``turn_leases``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
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

from aichat_backend.domain import Attachment, Message, MessageState, Role, now_us
from aichat_backend.records import TurnClaim, Usage
from aichat_backend.store.database import Tx
from aichat_backend.store.message_rows import DETAIL_VALUES, detail_params
from aichat_backend.store.messages_repo import MessageRepository, new_message_id
from aichat_backend.store.tables import messages, sessions
from aichat_backend.store.tree_repo import TreeRepository
from aichat_backend.store.turn_leases import (
    RELEASE,
    THIS_SESSION,
    LeaseRepository,
    claimable,
)
from aichat_backend.store.usage_repo import add_usage, usage_params, usage_upsert

_BEGIN = (
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
_CLAIMED = _BEGIN.cte("claimed")


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


_BEGIN_ONE_STATEMENT = (
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
_WRITE_ANSWER = (
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
_FINISH_ANSWER = _WRITE_ANSWER.where(
    or_(
        messages.c.state == MessageState.STREAMING.value,
        messages.c.state == MessageState.INTERRUPTED.value,
    )
)
_ANSWER_CTE = _FINISH_ANSWER.returning(messages.c.id).cte("answer")
_FINISH_ONE_STATEMENT = {
    True: usage_upsert("postgresql", prefix="u_", only_with=_ANSWER_CTE).add_cte(
        _ANSWER_CTE, RELEASE.returning(sessions.c.id).cte("released")
    ),
    False: RELEASE.add_cte(_ANSWER_CTE),
}


def _chained(given: Sequence[Message], first_seq: int, now: int, parent_id: str) -> list[Message]:
    """Messages given whole, numbered from ``first_seq``, each the child of the one before
    (the first of ``parent_id``)."""
    out: list[Message] = []
    for i, m in enumerate(given):
        parent = out[-1].id if out else parent_id
        out.append(replace(m, seq=first_seq + i, create_time_us=now, parent_id=parent))
    return out


class AnswerRepository:
    def __init__(self, db: Tx, user_id: str) -> None:
        self._db = db
        self._user = user_id

    async def begin(
        self,
        session_id: str,
        claim: TurnClaim,
        text: str,
        attachments_in: Sequence[Attachment],
        model: str,
        title: str,
        answer_id: str,
        *,
        earlier: Sequence[Message] = (),
        rounds: Sequence[Message] = (),
        parent_id: str | None = None,
        question: Message | None = None,
    ) -> tuple[Message, Message]:
        """Claim the session and store the user message and a placeholder answer.

        This is the only write before the first token, so it is kept to one UPDATE
        (claim, both sequence numbers, title, tool lock) and one multi-row INSERT; on
        PostgreSQL without attachments, to one statement that does both, which the
        caller may run in ``Database.statement()``. A conversation given whole is stored
        in the same INSERT: ``earlier`` before the user message, ``rounds`` after it
        (their tool calls are the caller's to store).

        The user message follows ``parent_id`` and the answer follows it (a conversation
        given whole is chained between them). With ``question`` (RegenerateAnswer) no user
        message is stored: the answer is a new child of that existing one.
        """
        now = now_us()
        if parent_id is None and question is None:
            parent_id = await self._active(session_id)
        added = (1 if question is not None else 2) + len(earlier) + len(rounds)
        params = {
            "p_added": added,
            "p_user": self._user,
            "p_sid": session_id,
            "p_now": now,
            "p_turn": claim.turn_id,
            "p_owner": claim.owner,
            "p_expires": now + int(claim.lease_seconds * 1e6),
            "p_title": title,
            "p_answer": answer_id,
        }
        user_msg_id = question.id if question is not None else new_message_id()
        one_statement = (
            not attachments_in
            and not earlier
            and not rounds
            and question is None
            and self._db.dialect.name == "postgresql"
        )
        if one_statement:
            params.update(
                p_user_msg=user_msg_id, p_text=text, p_model=model, p_parent=parent_id
            )
            seqs = (await self._db.execute(_BEGIN_ONE_STATEMENT, params)).scalars().all()
            row = (max(seqs),) if seqs else None
        else:
            row = (await self._db.execute(_BEGIN, params)).first()
        if row is None:
            await LeaseRepository(self._db, self._user).refuse_claim(session_id)
        seq = row[0]
        answer = Message(
            session_id=session_id,
            id=answer_id,
            seq=seq,
            role=Role.ASSISTANT,
            state=MessageState.STREAMING,
            model=model,
            create_time_us=now,
        )
        if question is not None:
            answer.parent_id = question.id
            await MessageRepository(self._db, self._user).insert([answer])
            return question, answer
        base = seq - added
        parent_id = parent_id or ""
        before = _chained(earlier, base + 1, now, parent_id)
        base += len(before) + 1
        user_msg = Message(
            session_id=session_id,
            id=user_msg_id,
            seq=base,
            role=Role.USER,
            text=text,
            create_time_us=now,
            attachments=list(attachments_in),
            parent_id=before[-1].id if before else parent_id,
        )
        after = _chained(rounds, base + 1, now, user_msg_id)
        answer.parent_id = after[-1].id if after else user_msg_id
        if not one_statement:
            await MessageRepository(self._db, self._user).insert(
                [*before, user_msg, *after, answer]
            )
        return user_msg, answer

    async def _active(self, session_id: str) -> str:
        found = await self._db.scalar(
            select(sessions.c.active_message_id).where(
                and_(sessions.c.user_id == self._user, sessions.c.id == session_id)
            )
        )
        return str(found or "")

    async def placeholder(
        self, session_id: str, model: str, parent_id: str, message_id: str | None = None
    ) -> Message:
        """The next round's answer, a child of the round before it."""
        return await MessageRepository(self._db, self._user).append(
            session_id,
            Role.ASSISTANT,
            "",
            state=MessageState.STREAMING,
            message_id=message_id or new_message_id(),
            model=model,
            parent_id=parent_id,
        )

    async def finish(
        self,
        session_id: str,
        turn_id: str,
        answer: Message,
        usage: Usage | None,
    ) -> None:
        """A turn's last write: the answer, the session released, the usage if any. One
        statement on PostgreSQL, which the caller may run in ``Database.statement()``.
        Idempotent: sent again, it changes nothing more."""
        if self._db.dialect.name == "postgresql":
            params = self._answer_params(answer)
            params.update(p_sid=session_id, p_turn=turn_id, p_now=now_us())
            if usage is not None:
                params.update(usage_params(self._user, usage, prefix="u_"))
            await self._db.execute(_FINISH_ONE_STATEMENT[usage is not None], params)
            return
        landed = await self._db.execute(_FINISH_ANSWER, self._answer_params(answer))
        await LeaseRepository(self._db, self._user).release(session_id, turn_id)
        if usage is not None and landed.rowcount:  # type: ignore[attr-defined]
            await add_usage(self._db, self._user, usage)

    async def write_message(self, m: Message, state: MessageState | None = None) -> None:
        """Write an answer's text, state and usage as they are in ``m`` (or with ``state``)."""
        await self._db.execute(_WRITE_ANSWER, self._answer_params(m, state))

    def _answer_params(self, m: Message, state: MessageState | None = None) -> dict[str, Any]:
        return {
            "p_user": self._user,
            "p_id": m.id,
            "p_text": m.text,
            "p_state": (state or m.state).value,
            "p_finish": m.finish_reason[:64],
            "p_in": m.input_tokens,
            "p_out": m.output_tokens,
            "p_model": m.model,
            **detail_params(m),
        }

    # --- replay ---------------------------------------------------------------------

    async def turn_result(self, first_answer_id: str) -> tuple[Message | None, Message | None]:
        """(the turn's user message, its last answer) for replaying a finished turn."""
        user_msg, answers = await self.turn_answers(first_answer_id)
        return user_msg, answers[-1] if answers else None

    async def turn_answers(self, first_answer_id: str) -> tuple[Message | None, list[Message]]:
        """(the turn's user message, its answer messages in order), from the first answer:
        its parent, and the chain of rounds below it (never another branch)."""
        tree = TreeRepository(self._db, self._user)
        answers = await tree.by_ids(await tree.turn_rounds(first_answer_id))
        if not answers:
            return None, []
        parents = await tree.by_ids([answers[0].parent_id]) if answers[0].parent_id else []
        user_msg = parents[0] if parents and parents[0].role is Role.USER else None
        return user_msg, answers
