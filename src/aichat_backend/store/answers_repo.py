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
from aichat_backend.store import storage
from aichat_backend.store.database import Tx
from aichat_backend.store.message_rows import DETAIL_VALUES, detail_params
from aichat_backend.store.messages_repo import MessageRepository, new_message_id
from aichat_backend.store.tables import messages, sessions
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
_CLAIMED = _BEGIN.where(
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
        size,
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
                cast(bindparam("p_size"), BigInteger),
            ),
            _turn_row(
                "p_answer",
                0,
                Role.ASSISTANT,
                literal("", Text),
                MessageState.STREAMING,
                cast(bindparam("p_model"), String),
                literal(0, BigInteger),
            ),
        ),
        # The columns left out start as their server defaults (no reasoning, no usage).
        include_defaults=False,
    )
    .returning(messages.c.seq)
    .add_cte(_COUNTED)
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
_UNFINISHED = (MessageState.STREAMING.value, MessageState.INTERRUPTED.value)
_FINISH_ANSWER = _WRITE_ANSWER.where(or_(*(messages.c.state == s for s in _UNFINISHED)))
_ANSWER_CTE = _FINISH_ANSWER.returning(messages.c.id, messages.c.stored_bytes).cte("answer")
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
_FINISH_ONE_STATEMENT = {
    True: usage_upsert("postgresql", prefix="u_", only_with=_ANSWER_CTE).add_cte(
        _ANSWER_CTE, RELEASE.returning(sessions.c.id).cte("released"), _ANSWER_COUNTED
    ),
    False: RELEASE.add_cte(_ANSWER_CTE, _ANSWER_COUNTED),
}


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
        quota: int = storage.UNLIMITED,
    ) -> tuple[Message, Message]:
        """Claim the session and store the user message and a placeholder answer.

        This is the only write before the first token, so it is kept to one UPDATE
        (claim, both sequence numbers, title, tool lock) and one multi-row INSERT; on
        PostgreSQL without attachments, to one statement that does both, which the
        caller may run in ``Database.statement()``. A conversation given whole is stored
        in the same INSERT: ``earlier`` before the user message, ``rounds`` after it
        (their tool calls are the caller's to store). All of it is counted against the
        user's storage ``quota`` (``storage``), or refused with STORAGE_QUOTA_EXCEEDED.
        """
        now = now_us()
        size = (
            storage.text_bytes(text)
            + storage.attachment_bytes(attachments_in)
            + sum(storage.message_bytes(m) for m in (*earlier, *rounds))
        )
        added = 2 + len(earlier) + len(rounds)
        params = {
            "p_added": added,
            "p_user": self._user,
            "p_sid": session_id,
            "p_now": now,
            "p_turn": claim.turn_id,
            "p_owner": claim.owner,
            "p_expires": now + int(claim.lease_seconds * 1e6),
            "p_title": title,
            "p_size": size,
            "p_quota": quota,
        }
        user_msg_id = new_message_id()
        one_statement = (
            not attachments_in
            and not earlier
            and not rounds
            and self._db.dialect.name == "postgresql"
        )
        if one_statement:
            params.update(p_user_msg=user_msg_id, p_answer=answer_id, p_text=text, p_model=model)
            seqs = (await self._db.execute(_BEGIN_ONE_STATEMENT, params)).scalars().all()
            row = (max(seqs),) if seqs else None
            if row is None:
                used = await storage.stored(self._db, self._user)
                if used + size > quota:
                    raise storage.quota_exceeded(quota, used, size)
        else:
            # Counted first: a claim refused next rolls the count back with it.
            await storage.reserve(self._db, self._user, size, quota)
            row = (await self._db.execute(_BEGIN, params)).first()
        if row is None:
            await LeaseRepository(self._db, self._user).refuse_claim(session_id)
        seq = row[0]
        base = seq - added
        before = [replace(m, seq=base + 1 + i, create_time_us=now) for i, m in enumerate(earlier)]
        base += len(before) + 1
        after = [replace(m, seq=base + 1 + i, create_time_us=now) for i, m in enumerate(rounds)]
        user_msg = Message(
            session_id=session_id,
            id=user_msg_id,
            seq=base,
            role=Role.USER,
            text=text,
            create_time_us=now,
            attachments=list(attachments_in),
        )
        answer = Message(
            session_id=session_id,
            id=answer_id,
            seq=seq,
            role=Role.ASSISTANT,
            state=MessageState.STREAMING,
            model=model,
            create_time_us=now,
        )
        if not one_statement:
            await MessageRepository(self._db, self._user).insert(
                [*before, user_msg, *after, answer]
            )
        return user_msg, answer

    async def placeholder(
        self, session_id: str, model: str, message_id: str | None = None
    ) -> Message:
        return await MessageRepository(self._db, self._user).append(
            session_id,
            Role.ASSISTANT,
            "",
            state=MessageState.STREAMING,
            message_id=message_id or new_message_id(),
            model=model,
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
        params = self._answer_params(answer)
        if self._db.dialect.name == "postgresql":
            params.update(p_sid=session_id, p_turn=turn_id, p_now=now_us())
            if usage is not None:
                params.update(usage_params(self._user, usage, prefix="u_"))
            await self._db.execute(_FINISH_ONE_STATEMENT[usage is not None], params)
            return
        delta = await storage.rewrite_delta(
            self._db, self._user, answer.id, params["p_size"], _UNFINISHED
        )
        landed = await self._db.execute(_FINISH_ANSWER, params)
        await LeaseRepository(self._db, self._user).release(session_id, turn_id)
        if landed.rowcount:  # type: ignore[attr-defined]
            await storage.add(self._db, self._user, delta)
            if usage is not None:
                await add_usage(self._db, self._user, usage)

    async def write_message(self, m: Message, state: MessageState | None = None) -> None:
        """Write an answer's text, state and usage as they are in ``m`` (or with ``state``),
        and count its bytes' difference (inside a transaction: the row stays locked)."""
        params = self._answer_params(m, state)
        delta = await storage.rewrite_delta(self._db, self._user, m.id, params["p_size"])
        await self._db.execute(_WRITE_ANSWER, params)
        await storage.add(self._db, self._user, delta)

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
            "p_size": storage.message_bytes(m),
            **detail_params(m),
        }

    # --- replay ---------------------------------------------------------------------

    async def turn_result(self, first_answer_id: str) -> tuple[Message | None, Message | None]:
        """(the turn's user message, its last answer) for replaying a finished turn."""
        user_msg, answers = await self.turn_answers(first_answer_id)
        return user_msg, answers[-1] if answers else None

    async def turn_answers(self, first_answer_id: str) -> tuple[Message | None, list[Message]]:
        """(the turn's user message, its answer messages in order), from the first answer."""
        row = (
            await self._db.execute(
                select(messages.c.session_id, messages.c.seq).where(
                    and_(messages.c.user_id == self._user, messages.c.id == first_answer_id)
                )
            )
        ).first()
        if row is None:
            return None, []
        session_id, seq = row
        repo = MessageRepository(self._db, self._user)
        found = await repo.page(session_id, 1000, seq - 2)
        user_msg = found[0] if found and found[0].role is Role.USER else None
        answers: list[Message] = []
        for m in found[1:]:
            if m.role is Role.USER:
                break
            answers.append(m)
        return user_msg, answers
