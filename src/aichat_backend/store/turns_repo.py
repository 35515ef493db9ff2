"""The storage side of a chat turn.

A turn claims its session (a lease, so one turn runs per session across replicas and a
crashed replica's claim runs out), stores the user message with a placeholder answer in
one transaction overlapped with the upstream request, and writes each answer once when
its round ends. Tokens are never written one by one. A round that asks for tools stores
the calls with the answer; their results are written as each call ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import (
    BigInteger,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    exists,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)

from aichat_backend.domain import (
    Attachment,
    Message,
    MessageState,
    Role,
    ToolCall,
    ToolCallState,
    now_us,
)
from aichat_backend.errors import Aborted
from aichat_backend.store.database import Tx
from aichat_backend.store.messages_repo import MessageRepository, new_message_id
from aichat_backend.store.sessions_repo import session_not_found
from aichat_backend.store.tables import messages, sessions, tool_calls
from aichat_backend.store.usage_repo import add_usage, usage_params, usage_upsert

UNFINISHED_CALL_STATES = (ToolCallState.APPROVED.value, ToolCallState.RUNNING.value)


@dataclass(slots=True)
class TurnClaim:
    turn_id: str
    owner: str
    lease_seconds: float


@dataclass(slots=True)
class PendingCall:
    message_id: str
    call: ToolCall
    create_time_us: int


def _claimable(now: Any) -> Any:
    return or_(sessions.c.active_turn_id.is_(None), sessions.c.active_turn_expires_us < now)


# The statements of every turn, built once (see sessions_repo._GET).
_THIS_SESSION = and_(sessions.c.user_id == bindparam("p_user"), sessions.c.id == bindparam("p_sid"))
_BEGIN = (
    update(sessions)
    .where(and_(_THIS_SESSION, _claimable(bindparam("p_now"))))
    .values(
        active_turn_id=bindparam("p_turn"),
        active_turn_owner=bindparam("p_owner"),
        active_turn_expires_us=bindparam("p_expires"),
        last_seq=sessions.c.last_seq + 2,
        message_count=sessions.c.message_count + 2,
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
# first token instead of four.
_CLAIMED = _BEGIN.cte("claimed")


def _turn_row(
    id_param: str, seq_back: int, role: Role, text: Any, state: MessageState, model: Any
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
        ],
        union_all(
            _turn_row(
                "p_user_msg",
                1,
                Role.USER,
                cast(bindparam("p_text"), Text),
                MessageState.COMPLETE,
                literal("", String),
            ),
            _turn_row(
                "p_answer",
                0,
                Role.ASSISTANT,
                literal("", Text),
                MessageState.STREAMING,
                cast(bindparam("p_model"), String),
            ),
        ),
    )
    .returning(messages.c.seq)
)
_RELEASE = (
    update(sessions)
    .where(and_(_THIS_SESSION, sessions.c.active_turn_id == bindparam("p_turn")))
    .values(
        active_turn_id=None,
        active_turn_owner=None,
        active_turn_expires_us=None,
        update_time_us=bindparam("p_now"),
    )
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
    )
)

# PostgreSQL only: a finished turn's answer, the session's release and the usage row
# in one statement (data-modifying CTEs run whether or not the main part reads them),
# atomic by itself: one round trip instead of five.
_ANSWER_CTE = _WRITE_ANSWER.returning(messages.c.id).cte("answer")
_FINISH_ONE_STATEMENT = {
    True: usage_upsert("postgresql", prefix="u_").add_cte(
        _ANSWER_CTE, _RELEASE.returning(sessions.c.id).cte("released")
    ),
    False: _RELEASE.add_cte(_ANSWER_CTE),
}


class TurnRepository:
    def __init__(self, db: Tx, user_id: str) -> None:
        self._db = db
        self._user = user_id

    def _session(self, session_id: str) -> Any:
        return and_(sessions.c.user_id == self._user, sessions.c.id == session_id)

    # --- the session's claim ---------------------------------------------------------

    async def claim(self, session_id: str, claim: TurnClaim) -> None:
        now = now_us()
        claimed = await self._db.execute(
            update(sessions)
            .where(and_(self._session(session_id), _claimable(now)))
            .values(
                active_turn_id=claim.turn_id,
                active_turn_owner=claim.owner,
                active_turn_expires_us=now + int(claim.lease_seconds * 1e6),
            )
        )
        if claimed.rowcount == 0:  # type: ignore[attr-defined]
            await self._refuse_claim(session_id)

    async def _refuse_claim(self, session_id: str) -> NoReturn:
        found = await self._db.scalar(select(sessions.c.id).where(self._session(session_id)))
        if found is None:
            raise session_not_found(session_id)
        raise Aborted(
            f"sessions/{session_id} is answering another message; wait for that turn",
            reason="SESSION_BUSY",
            metadata={"resource": f"sessions/{session_id}"},
            retry_after=1.0,
        )

    async def renew(self, session_id: str, turn_id: str, lease_seconds: float) -> None:
        await self._db.execute(
            update(sessions)
            .where(and_(self._session(session_id), sessions.c.active_turn_id == turn_id))
            .values(active_turn_expires_us=now_us() + int(lease_seconds * 1e6))
        )

    async def release(self, session_id: str, turn_id: str) -> None:
        params = {"p_user": self._user, "p_sid": session_id, "p_turn": turn_id, "p_now": now_us()}
        await self._db.execute(_RELEASE, params)

    # --- messages -------------------------------------------------------------------

    async def begin(
        self,
        session_id: str,
        claim: TurnClaim,
        text: str,
        attachments_in: Sequence[Attachment],
        model: str,
        title: str,
        answer_id: str,
    ) -> tuple[Message, Message]:
        """Claim the session and store the user message and a placeholder answer.

        This is the only write before the first token, so it is kept to one UPDATE
        (claim, both sequence numbers, title, tool lock) and one multi-row INSERT; on
        PostgreSQL without attachments, to one statement that does both, which the
        caller may run in ``Database.statement()``.
        """
        now = now_us()
        params = {
            "p_user": self._user,
            "p_sid": session_id,
            "p_now": now,
            "p_turn": claim.turn_id,
            "p_owner": claim.owner,
            "p_expires": now + int(claim.lease_seconds * 1e6),
            "p_title": title,
        }
        user_msg_id = new_message_id()
        one_statement = not attachments_in and self._db.dialect.name == "postgresql"
        if one_statement:
            params.update(p_user_msg=user_msg_id, p_answer=answer_id, p_text=text, p_model=model)
            seqs = (await self._db.execute(_BEGIN_ONE_STATEMENT, params)).scalars().all()
            row = (max(seqs),) if seqs else None
        else:
            row = (await self._db.execute(_BEGIN, params)).first()
        if row is None:
            await self._refuse_claim(session_id)
        seq = row[0]
        user_msg = Message(
            session_id=session_id,
            id=user_msg_id,
            seq=seq - 1,
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
            await MessageRepository(self._db, self._user).insert([user_msg, answer])
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
        usage: tuple[str, int, int] | None,
    ) -> None:
        """A turn's last write: the answer, the session released, the usage (model, input
        and output tokens) if any. One statement on PostgreSQL, which the caller may run
        in ``Database.statement()``."""
        if self._db.dialect.name == "postgresql":
            params = self._answer_params(answer)
            params.update(p_sid=session_id, p_turn=turn_id, p_now=now_us())
            if usage is not None:
                params.update(usage_params(self._user, *usage, prefix="u_"))
            await self._db.execute(_FINISH_ONE_STATEMENT[usage is not None], params)
            return
        await self.write_message(answer)
        await self.release(session_id, turn_id)
        if usage is not None:
            await add_usage(self._db, self._user, *usage)

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
        }

    # --- tool calls -----------------------------------------------------------------

    async def add_calls(self, session_id: str, message_id: str, calls: Sequence[ToolCall]) -> None:
        now = now_us()
        await self._db.execute(
            insert(tool_calls),
            [
                {
                    "message_id": message_id,
                    "id": c.id,
                    "user_id": self._user,
                    "session_id": session_id,
                    "position": i,
                    "tool_name": c.tool_name,
                    "server": c.server,
                    "arguments": c.arguments,
                    "state": c.state.value,
                    "result_text": c.result_text,
                    "is_error": c.is_error,
                    "duration_ms": c.duration_ms,
                    "approval_reason": c.approval_reason,
                    "create_time_us": now,
                    "update_time_us": now,
                }
                for i, c in enumerate(calls)
            ],
        )

    async def update_call(self, message_id: str, call: ToolCall) -> None:
        await self._db.execute(
            update(tool_calls)
            .where(
                and_(
                    tool_calls.c.user_id == self._user,
                    tool_calls.c.message_id == message_id,
                    tool_calls.c.id == call.id,
                )
            )
            .values(
                state=call.state.value,
                arguments=call.arguments,
                result_text=call.result_text,
                is_error=call.is_error,
                duration_ms=call.duration_ms,
                update_time_us=now_us(),
            )
        )

    async def fail_unfinished_calls(self, message_id: str, text: str) -> None:
        await self._db.execute(
            update(tool_calls)
            .where(
                and_(
                    tool_calls.c.user_id == self._user,
                    tool_calls.c.message_id == message_id,
                    tool_calls.c.state.in_(UNFINISHED_CALL_STATES),
                )
            )
            .values(
                state=ToolCallState.FAILED.value,
                result_text=text,
                is_error=True,
                update_time_us=now_us(),
            )
        )

    def _pending_in(self, session_id: str) -> Any:
        return and_(
            tool_calls.c.user_id == self._user,
            tool_calls.c.session_id == session_id,
            tool_calls.c.state == ToolCallState.PENDING_APPROVAL.value,
        )

    async def deny_all_pending(self, session_id: str, text: str) -> list[ToolCall]:
        """Deny every call still waiting in the session, in one statement."""
        rows = (
            await self._db.execute(
                update(tool_calls)
                .where(self._pending_in(session_id))
                .values(
                    state=ToolCallState.DENIED.value,
                    result_text=text,
                    is_error=False,
                    update_time_us=now_us(),
                )
                .returning(
                    tool_calls.c.id,
                    tool_calls.c.tool_name,
                    tool_calls.c.arguments,
                    tool_calls.c.server,
                    tool_calls.c.approval_reason,
                )
            )
        ).all()
        return [
            ToolCall(
                id=r.id,
                tool_name=r.tool_name,
                arguments=dict(r.arguments or {}),
                state=ToolCallState.DENIED,
                server=r.server,
                result_text=text,
                approval_reason=r.approval_reason,
            )
            for r in rows
        ]

    async def pending_calls(self, session_id: str) -> list[PendingCall]:
        rows = (
            (
                await self._db.execute(
                    select(tool_calls)
                    .where(self._pending_in(session_id))
                    .order_by(tool_calls.c.create_time_us, tool_calls.c.position)
                )
            )
            .mappings()
            .all()
        )
        return [
            PendingCall(
                message_id=r["message_id"],
                call=ToolCall(
                    id=r["id"],
                    tool_name=r["tool_name"],
                    arguments=dict(r["arguments"] or {}),
                    state=ToolCallState.PENDING_APPROVAL,
                    server=r["server"],
                    approval_reason=r["approval_reason"],
                ),
                create_time_us=r["create_time_us"],
            )
            for r in rows
        ]

    async def decide(self, message_id: str, call: ToolCall, *, approved: bool) -> bool:
        """Record a decision once: False when the call was no longer pending."""
        state = ToolCallState.APPROVED if approved else ToolCallState.DENIED
        result = await self._db.execute(
            update(tool_calls)
            .where(
                and_(
                    tool_calls.c.user_id == self._user,
                    tool_calls.c.message_id == message_id,
                    tool_calls.c.id == call.id,
                    tool_calls.c.state == ToolCallState.PENDING_APPROVAL.value,
                )
            )
            .values(
                state=state.value,
                arguments=call.arguments,
                result_text=call.result_text,
                is_error=call.is_error,
                update_time_us=now_us(),
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def call_state(self, session_id: str, call_id: str) -> ToolCallState | None:
        state = await self._db.scalar(
            select(tool_calls.c.state).where(
                and_(
                    tool_calls.c.user_id == self._user,
                    tool_calls.c.session_id == session_id,
                    tool_calls.c.id == call_id,
                )
            )
        )
        return ToolCallState(state) if state is not None else None

    # --- replay ---------------------------------------------------------------------

    async def turn_result(self, first_answer_id: str) -> tuple[Message | None, Message | None]:
        """(the turn's user message, its last answer) for replaying a finished turn."""
        row = (
            await self._db.execute(
                select(messages.c.session_id, messages.c.seq).where(
                    and_(messages.c.user_id == self._user, messages.c.id == first_answer_id)
                )
            )
        ).first()
        if row is None:
            return None, None
        session_id, seq = row
        repo = MessageRepository(self._db, self._user)
        found = await repo.page(session_id, 1000, seq - 2)
        user_msg = found[0] if found and found[0].role is Role.USER else None
        last: Message | None = None
        for m in found[1:]:
            if m.role is Role.USER:
                break
            last = m
        return user_msg, last


async def sweep_interrupted(db: Tx, starting_owner: str | None = None) -> int:
    """Mark answers a crash left unfinished as INTERRUPTED and free their sessions.

    A turn is abandoned when its lease ran out, or, at start-up, when it belongs to the
    replica that is starting (so none of its turns can still be running).
    """
    now = now_us()
    live = [
        sessions.c.user_id == messages.c.user_id,
        sessions.c.id == messages.c.session_id,
        sessions.c.active_turn_id.is_not(None),
        sessions.c.active_turn_expires_us >= now,
    ]
    stale = [sessions.c.active_turn_expires_us < now]
    if starting_owner is not None:
        live.append(sessions.c.active_turn_owner != starting_owner)
        stale.append(sessions.c.active_turn_owner == starting_owner)
    abandoned = and_(messages.c.state == MessageState.STREAMING.value, ~exists().where(and_(*live)))
    ids = [r[0] for r in (await db.execute(select(messages.c.id).where(abandoned))).all()]
    if ids:
        await db.execute(
            update(messages)
            .where(messages.c.id.in_(ids))
            .values(state=MessageState.INTERRUPTED.value, finish_reason="interrupted")
        )
        await db.execute(
            update(tool_calls)
            .where(
                and_(
                    tool_calls.c.message_id.in_(ids),
                    tool_calls.c.state.in_(UNFINISHED_CALL_STATES),
                )
            )
            .values(
                state=ToolCallState.FAILED.value,
                result_text="interrupted: the server stopped while the tool ran",
                is_error=True,
            )
        )
    await db.execute(
        update(sessions)
        .where(and_(sessions.c.active_turn_id.is_not(None), or_(*stale)))
        .values(active_turn_id=None, active_turn_owner=None, active_turn_expires_us=None)
    )
    return len(ids)


__all__ = ["PendingCall", "TurnClaim", "TurnRepository", "new_message_id", "sweep_interrupted"]
