"""The storage side of a chat turn: claim the session, store the question, store the answer.

A turn costs two writes: ``begin`` (claim + user message + answer placeholder, one
transaction, overlapped with the upstream request) and ``finish`` (the answer, once).
Tokens are never written one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from aichat_backend.domain import Attachment, Message, MessageState, Role, now_us
from aichat_backend.errors import Aborted
from aichat_backend.store.messages_repo import MessageRepository, new_message_id
from aichat_backend.store.sessions_repo import session_not_found
from aichat_backend.store.tables import messages, sessions


@dataclass(slots=True)
class TurnClaim:
    answer_id: str
    owner: str
    lease_seconds: float


class TurnRepository:
    def __init__(self, db: AsyncSession, user_id: str) -> None:
        self._db = db
        self._user = user_id

    def _session(self, session_id: str):  # type: ignore[no-untyped-def]
        return and_(sessions.c.user_id == self._user, sessions.c.id == session_id)

    async def begin(
        self,
        session_id: str,
        claim: TurnClaim,
        text: str,
        attachments_in: Sequence[Attachment],
        model: str,
        title: str,
    ) -> tuple[Message, Message]:
        """Claim the session for this turn and store the user message and a placeholder."""
        now = now_us()
        claimed = await self._db.execute(
            update(sessions)
            .where(
                and_(
                    self._session(session_id),
                    or_(
                        sessions.c.active_turn_id.is_(None),
                        sessions.c.active_turn_expires_us < now,
                    ),
                )
            )
            .values(
                active_turn_id=claim.answer_id,
                active_turn_owner=claim.owner,
                active_turn_expires_us=now + int(claim.lease_seconds * 1e6),
            )
        )
        if claimed.rowcount == 0:  # type: ignore[attr-defined]
            found = await self._db.scalar(select(sessions.c.id).where(self._session(session_id)))
            if found is None:
                raise session_not_found(session_id)
            raise Aborted(
                f"sessions/{session_id} is answering another message; wait for that turn",
                reason="SESSION_BUSY",
                metadata={"resource": f"sessions/{session_id}"},
                retry_after=1.0,
            )
        repo = MessageRepository(self._db, self._user)
        user_msg = await repo.append(
            session_id,
            Role.USER,
            text,
            attachments_in=attachments_in,
            display_name_if_empty=title,
            lock_tools=True,
        )
        answer = await repo.append(
            session_id,
            Role.ASSISTANT,
            "",
            state=MessageState.STREAMING,
            message_id=claim.answer_id,
            model=model,
        )
        return user_msg, answer

    async def finish(
        self,
        session_id: str,
        answer_id: str,
        *,
        text: str,
        state: MessageState,
        finish_reason: str,
        input_tokens: int,
        output_tokens: int,
        model: str,
    ) -> None:
        """Write the answer once and release the session."""
        await self._db.execute(
            update(messages)
            .where(and_(messages.c.user_id == self._user, messages.c.id == answer_id))
            .values(
                text=text,
                state=state.value,
                finish_reason=finish_reason,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                model=model,
            )
        )
        await self._db.execute(
            update(sessions)
            .where(and_(self._session(session_id), sessions.c.active_turn_id == answer_id))
            .values(
                active_turn_id=None,
                active_turn_owner=None,
                active_turn_expires_us=None,
                update_time_us=now_us(),
            )
        )

    async def renew(self, session_id: str, answer_id: str, lease_seconds: float) -> None:
        await self._db.execute(
            update(sessions)
            .where(and_(self._session(session_id), sessions.c.active_turn_id == answer_id))
            .values(active_turn_expires_us=now_us() + int(lease_seconds * 1e6))
        )

    async def answer(self, answer_id: str) -> tuple[Message | None, Message | None]:
        """(the user message before it, the answer) for replaying a finished turn."""
        row = (
            await self._db.execute(
                select(messages.c.session_id, messages.c.seq).where(
                    and_(messages.c.user_id == self._user, messages.c.id == answer_id)
                )
            )
        ).first()
        if row is None:
            return None, None
        session_id, seq = row
        found = await MessageRepository(self._db, self._user).page(session_id, 2, seq - 2)
        by_seq = {m.seq: m for m in found}
        return by_seq.get(seq - 1), by_seq.get(seq)


async def sweep_interrupted(db: AsyncSession, starting_owner: str | None = None) -> int:
    """Mark answers a crash left unfinished as INTERRUPTED and free their sessions.

    A turn is abandoned when its lease ran out, or, at start-up, when it belongs to the
    replica that is starting (so none of its turns can still be running).
    """
    now = now_us()
    live = [
        sessions.c.user_id == messages.c.user_id,
        sessions.c.id == messages.c.session_id,
        sessions.c.active_turn_id == messages.c.id,
        sessions.c.active_turn_expires_us >= now,
    ]
    stale = [sessions.c.active_turn_expires_us < now]
    if starting_owner is not None:
        live.append(sessions.c.active_turn_owner != starting_owner)
        stale.append(sessions.c.active_turn_owner == starting_owner)
    result = await db.execute(
        update(messages)
        .where(
            and_(messages.c.state == MessageState.STREAMING.value, ~exists().where(and_(*live)))
        )
        .values(state=MessageState.INTERRUPTED.value, finish_reason="interrupted")
    )
    await db.execute(
        update(sessions)
        .where(and_(sessions.c.active_turn_id.is_not(None), or_(*stale)))
        .values(active_turn_id=None, active_turn_owner=None, active_turn_expires_us=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


__all__ = ["TurnClaim", "TurnRepository", "new_message_id", "sweep_interrupted"]
