"""A turn's claim on its session: one turn runs per session across replicas.

The claim is a lease: it runs out ``lease_seconds`` after it was made or last renewed,
so a crashed replica's turns are swept (``sweep_interrupted``) and their sessions freed.
The statements here are also the lease half of the one-statement writes in
``answers_repo`` (claim + messages, answer + release).
"""

from __future__ import annotations

from typing import Any, NoReturn

from sqlalchemy import and_, bindparam, exists, or_, select, tuple_, update

from aichat_backend import names
from aichat_backend.domain import MessageState, Role, ToolCallState, now_us, session_not_found
from aichat_backend.errors import Aborted
from aichat_backend.reasons import Reason
from aichat_backend.records import TurnClaim
from aichat_backend.store.database import Tx
from aichat_backend.store.tables import messages, sessions, tool_calls

UNFINISHED_CALL_STATES = (ToolCallState.APPROVED.value, ToolCallState.RUNNING.value)
INTERRUPTED_CALL = "interrupted: the server stopped while the tool ran"


def claimable(now: Any) -> Any:
    """A session no turn holds, or whose holder's lease ran out."""
    return or_(sessions.c.active_turn_id.is_(None), sessions.c.active_turn_expires_us < now)


# Built once (see sessions_repo._GET); bound by p_user, p_sid, p_turn, p_now.
THIS_SESSION = and_(sessions.c.user_id == bindparam("p_user"), sessions.c.id == bindparam("p_sid"))
RELEASE = (
    update(sessions)
    .where(and_(THIS_SESSION, sessions.c.active_turn_id == bindparam("p_turn")))
    .values(
        active_turn_id=None,
        active_turn_owner=None,
        active_turn_expires_us=None,
        update_time_us=bindparam("p_now"),
    )
)


class LeaseRepository:
    def __init__(self, db: Tx, user_id: str) -> None:
        self._db = db
        self._user = user_id

    def _session(self, session_id: str) -> Any:
        return and_(sessions.c.user_id == self._user, sessions.c.id == session_id)

    async def claim(self, session_id: str, claim: TurnClaim) -> None:
        now = now_us()
        claimed = await self._db.execute(
            update(sessions)
            .where(and_(self._session(session_id), claimable(now)))
            .values(
                active_turn_id=claim.turn_id,
                active_turn_owner=claim.owner,
                active_turn_expires_us=now + int(claim.lease_seconds * 1e6),
            )
        )
        if claimed.rowcount == 0:  # type: ignore[attr-defined]
            await self.refuse_claim(session_id)

    async def refuse_claim(self, session_id: str) -> NoReturn:
        """The error for a claim that did not take: the session is missing, or busy."""
        found = await self._db.scalar(select(sessions.c.id).where(self._session(session_id)))
        if found is None:
            raise session_not_found(session_id)
        raise Aborted(
            f"{names.session(session_id)} is answering another message; wait for that turn",
            reason=Reason.SESSION_BUSY,
            metadata={"resource": names.session(session_id)},
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
        await self._db.execute(RELEASE, params)


def abandoned_answers(now: Any) -> Any:
    """Answers still being written whose turn is over: no turn holds their session (the
    lease ran out), or a later turn began (it took the session)."""
    live = and_(
        sessions.c.user_id == messages.c.user_id,
        sessions.c.id == messages.c.session_id,
        sessions.c.active_turn_id.is_not(None),
        sessions.c.active_turn_expires_us >= now,
    )
    later = messages.alias("later")
    asked = messages.alias("later_parent")
    # A later turn began: a later user message, or a later answer to a user message (a
    # regenerated answer stores no user message of its own).
    superseded = and_(
        later.c.user_id == messages.c.user_id,
        later.c.session_id == messages.c.session_id,
        later.c.seq > messages.c.seq,
        or_(
            later.c.role == Role.USER.value,
            exists().where(
                and_(
                    asked.c.user_id == later.c.user_id,
                    asked.c.id == later.c.parent_id,
                    asked.c.role == Role.USER.value,
                )
            ),
        ),
    )
    return and_(
        messages.c.state == MessageState.STREAMING.value,
        or_(~exists().where(live), exists().where(superseded)),
    )


# Built once, with the time as a parameter: every replica sweeps every few seconds, and
# building this statement (two aliases, three EXISTS) and its cache key cost more CPU than
# the idle database took to run it.
ABANDONED = select(messages.c.id, messages.c.user_id, messages.c.session_id).where(
    abandoned_answers(bindparam("sweep_now"))
)


async def sweep_interrupted(db: Tx) -> int:
    """Mark answers a crash left unfinished as INTERRUPTED and free their sessions.

    An answer still being written is abandoned when no turn holds its session (the lease
    ran out), or when a later user message exists (a later turn took the session: this
    one is over). Only leases decide: a replica starting up never takes another process's
    live turn for its own (two processes may share a replica id by configuration).
    """
    now = now_us()
    found = (await db.execute(ABANDONED, {"sweep_now": now})).all()
    if not found:
        return 0
    ids = [r.id for r in found]
    await db.execute(
        update(messages)
        .where(messages.c.id.in_(ids))
        .values(state=MessageState.INTERRUPTED.value, finish_reason="interrupted")
    )
    await fail_unfinished(db, ids)
    # Their sessions' claims that ran out are cleared (an expired claim is claimable
    # anyway; found through the answers, so no sweep scans every session).
    owners = {(r.user_id, r.session_id) for r in found}
    await db.execute(
        update(sessions)
        .where(
            and_(
                tuple_(sessions.c.user_id, sessions.c.id).in_(sorted(owners)),
                sessions.c.active_turn_id.is_not(None),
                sessions.c.active_turn_expires_us < now,
            )
        )
        .values(active_turn_id=None, active_turn_owner=None, active_turn_expires_us=None)
    )
    return len(ids)


async def fail_unfinished(db: Tx, message_ids: list[str]) -> None:
    """The calls of interrupted answers that were running (or about to) fail."""
    await db.execute(
        update(tool_calls)
        .where(
            and_(
                tool_calls.c.message_id.in_(message_ids),
                tool_calls.c.state.in_(UNFINISHED_CALL_STATES),
            )
        )
        .values(
            state=ToolCallState.FAILED.value,
            result_text=INTERRUPTED_CALL,
            is_error=True,
        )
    )
