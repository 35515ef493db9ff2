"""Sweeps of turn event logs: abandoned ones (a crash), old ones (retention), cleared ones."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update

from aichat_backend.domain import MessageState, Role
from aichat_backend.store.database import Tx
from aichat_backend.store.tables import messages, turn_event_batches, turn_logs
from aichat_backend.store.turn_events_repo import LogRow


async def abandoned(tx: Tx, stale_before_us: int, replica_id: str | None) -> list[LogRow]:
    """Logs without their last event whose writer is gone: no flush since
    ``stale_before_us`` (a live turn flushes a heartbeat every few seconds), or, at
    start-up, written by the replica that is starting."""
    gone = turn_logs.c.update_time_us < stale_before_us
    if replica_id is not None:
        gone = or_(gone, turn_logs.c.replica_id == replica_id)
    rows = (await tx.execute(select(turn_logs).where(and_(~turn_logs.c.ended, gone)))).all()
    return [LogRow(**r._mapping) for r in rows]


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


async def restore_partial(tx: Tx, log: LogRow, text_: str) -> Any:
    """Put a crashed turn's streamed text into its interrupted answer (the newest
    assistant message of the turn, if the crash sweep left it empty). Returns its row."""
    first_seq = (
        select(messages.c.seq)
        .where(and_(messages.c.user_id == log.user_id, messages.c.id == log.answer_id))
        .scalar_subquery()
    )
    row = (
        await tx.execute(
            select(messages.c.id, messages.c.text, messages.c.state)
            .where(
                and_(
                    messages.c.user_id == log.user_id,
                    messages.c.session_id == log.session_id,
                    messages.c.role == Role.ASSISTANT.value,
                    messages.c.seq >= first_seq,
                )
            )
            .order_by(messages.c.seq.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    if text_ and not row.text and row.state == MessageState.INTERRUPTED.value:
        await tx.execute(
            update(messages)
            .where(and_(messages.c.user_id == log.user_id, messages.c.id == row.id))
            .values(text=text_)
        )
    return row.id


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
