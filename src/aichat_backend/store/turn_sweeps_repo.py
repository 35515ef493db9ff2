"""Sweeps of turn event logs: abandoned ones (a crash), old ones (retention), cleared ones."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, bindparam, delete, exists, func, or_, select, update

from aichat_backend.domain import MessageState, Role
from aichat_backend.providers.base import ReasoningBlock
from aichat_backend.store import storage
from aichat_backend.store.database import Tx
from aichat_backend.store.tables import messages, sessions, turn_event_batches, turn_logs
from aichat_backend.store.turn_events_repo import LogRow
from aichat_backend.store.turn_leases import abandoned_answers, fail_unfinished


async def abandoned(tx: Tx, now_us: int, quiet_before_us: int) -> list[LogRow]:
    """Logs without their last event whose turn is over: its claim on the session ran
    out, or (once it released the session, or another turn took it) no flush came since
    ``quiet_before_us`` (a turn that ended stores its last event at once). A turn whose
    lease is live is never taken, whichever replica runs it."""
    # Replicas sweep at once on PostgreSQL: each log is ended by one of them.
    query = ABANDONED_LOGS_LOCKED if tx.dialect.name == "postgresql" else ABANDONED_LOGS
    params = {"sweep_now": now_us, "quiet_before": quiet_before_us}
    return [LogRow(**r._mapping) for r in (await tx.execute(query, params)).all()]


def _abandoned_logs() -> Select[Any]:
    now: Any = bindparam("sweep_now")
    claim = and_(sessions.c.user_id == turn_logs.c.user_id, sessions.c.id == turn_logs.c.session_id)
    mine = sessions.c.active_turn_id == turn_logs.c.turn_id
    live = exists().where(and_(claim, mine, sessions.c.active_turn_expires_us >= now))
    expired = exists().where(and_(claim, mine, sessions.c.active_turn_expires_us < now))
    return select(turn_logs).where(
        and_(
            ~turn_logs.c.ended,
            ~live,
            or_(expired, turn_logs.c.update_time_us < bindparam("quiet_before")),
        )
    )


# Built once, the times as parameters (see turn_leases.ABANDONED): run at every sweep.
ABANDONED_LOGS = _abandoned_logs()
ABANDONED_LOGS_LOCKED = ABANDONED_LOGS.with_for_update(skip_locked=True)


async def unlogged(tx: Tx, now_us: int) -> list[tuple[str, str, str]]:
    """(user, session, answer id) of abandoned answers with no log: turns whose replica
    died before their first flush. A chat turn's first answer has the turn's id, so such
    a turn's log is the one named by its answer."""
    rows = (await tx.execute(UNLOGGED, {"sweep_now": now_us})).all()
    return [(r[0], r[1], r[2]) for r in rows]


# Built once (see turn_leases.ABANDONED): a replica runs it at every sweep.
UNLOGGED = select(messages.c.user_id, messages.c.session_id, messages.c.id).where(
    and_(
        abandoned_answers(bindparam("sweep_now")),
        messages.c.role == Role.ASSISTANT.value,
        ~exists().where(turn_logs.c.turn_id == messages.c.id),
    )
)


async def interrupt_answer(
    tx: Tx, user_id: str, answer_id: str, text_: str, reasoning: str = ""
) -> None:
    """A crashed turn's answer INTERRUPTED (if still being written), with the text and
    reasoning its log kept when nothing else was stored for them; its unfinished calls
    failed. Rebuilt reasoning is one unsigned block (shown, never sent back)."""
    row = (
        await tx.execute(
            select(
                messages.c.text, messages.c.state, messages.c.reasoning, messages.c.stored_bytes
            ).where(and_(messages.c.user_id == user_id, messages.c.id == answer_id))
        )
    ).first()
    if row is None:
        return
    values: dict[str, Any] = {}
    if row.state == MessageState.STREAMING.value:
        values = {"state": MessageState.INTERRUPTED.value, "finish_reason": "interrupted"}
    unfinished = row.state in (MessageState.STREAMING.value, MessageState.INTERRUPTED.value)
    added = 0  # the bytes put back count against the user's storage (``storage``)
    if text_ and not row.text and unfinished:
        values["text"] = text_
        added += storage.text_bytes(text_)
    if reasoning and not row.reasoning and unfinished:
        values["reasoning"] = [ReasoningBlock(family="", text=reasoning).to_json()]
        added += storage.text_bytes(reasoning)
    if added:
        values["stored_bytes"] = row.stored_bytes + added
        await storage.add(tx, user_id, added)
    if values:
        await tx.execute(
            update(messages)
            .where(and_(messages.c.user_id == user_id, messages.c.id == answer_id))
            .values(**values)
        )
    if row.state == MessageState.STREAMING.value:
        await fail_unfinished(tx, [answer_id])


async def batches_of(tx: Tx, turn_id: str) -> list[tuple[int, bytes]]:
    """The turn's stored batches: (first seq, encoded frames), in order."""
    rows = (
        await tx.execute(
            select(turn_event_batches.c.first_seq, turn_event_batches.c.data)
            .where(turn_event_batches.c.turn_id == turn_id)
            .order_by(turn_event_batches.c.first_seq)
        )
    ).all()
    return [(r.first_seq, r.data) for r in rows]


async def purge_ended(tx: Tx, before_us: int, limit: int = 1000) -> int:
    """Forget logs of turns that ended before ``before_us`` (their batches cascade)."""
    ids = (
        (
            await tx.execute(
                select(turn_logs.c.turn_id)
                .where(and_(turn_logs.c.ended, turn_logs.c.update_time_us < before_us))
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    if not ids:
        return 0
    await tx.execute(delete(turn_event_batches).where(turn_event_batches.c.turn_id.in_(ids)))
    await tx.execute(delete(turn_logs).where(turn_logs.c.turn_id.in_(ids)))
    return len(ids)


async def forget_session(tx: Tx, user_id: str, session_id: str) -> None:
    """Delete the session's ended turn logs (ClearMessages): a running turn keeps its own."""
    ids = select(turn_logs.c.turn_id).where(
        and_(
            turn_logs.c.user_id == user_id,
            turn_logs.c.session_id == session_id,
            turn_logs.c.ended,
        )
    )
    await tx.execute(delete(turn_event_batches).where(turn_event_batches.c.turn_id.in_(ids)))
    await tx.execute(
        delete(turn_logs).where(
            and_(
                turn_logs.c.user_id == user_id,
                turn_logs.c.session_id == session_id,
                turn_logs.c.ended,
            )
        )
    )


async def stored_bytes_total(tx: Tx) -> int:
    return int(await tx.scalar(select(func.coalesce(func.sum(turn_logs.c.stored_bytes), 0))))
