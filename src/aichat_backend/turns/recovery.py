"""Turns whose replica died (a crash, kill -9): their answers and logs ended.

Run by every replica at start-up and every ``AICHAT_TURN_SWEEP_SECONDS`` after, before
the answers' own sweep (``TurnStore.sweep_interrupted``). Only turns whose lease ran out
are touched (or, once a turn let go of its session, whose log stopped for a lease): a
live turn elsewhere never is, whatever its replica's id. Each one's answer is the one
its log says its current round writes; it is marked INTERRUPTED with the text (and the
reasoning, when none was stored) its log kept, everything up to the last flush before
the crash, and the log gets its last event,
numbered past every event its producer may have sent (the limit each flush stores), so
readers waiting on it end too and no client sees a number twice. A turn that died before
its first flush has no log: it gets one, named by its first answer (which carries the
turn's id), holding just that last event. Also forgets the logs of turns that ended
longer ago than the retention.
"""

from __future__ import annotations

from collections.abc import Callable

from aichat_backend import names
from aichat_backend.domain import Message, now_us
from aichat_backend.errors import NotFound
from aichat_backend.store import turn_events_repo as repo
from aichat_backend.store import turn_sweeps_repo as sweeps
from aichat_backend.store.database import Database, Tx
from aichat_backend.store.messages_repo import MessageRepository
from aichat_backend.turns.buffer import SEND_AHEAD
from aichat_backend.turns.frames import (
    END,
    Frame,
    all_frames,
    encode,
    last_round,
    last_round_text,
)

# (the interrupted answer, or None if it is gone; the turn's name; the last event's seq)
InterruptedRenderer = Callable[[Message | None, str, int], bytes]
# The reasoning text among a round's frames (events are the API layer's to read).
ReasoningReader = Callable[[list[Frame]], str]


def _no_reasoning(_frames: list[Frame]) -> str:
    return ""


async def recover_abandoned(
    db: Database,
    render: InterruptedRenderer,
    *,
    lease_seconds: float,
    replica_id: str,
    reasoning_of: ReasoningReader = _no_reasoning,
) -> int:
    """End every abandoned turn's log and answer (its text, and the reasoning its round
    streamed, as the log kept them); the number ended."""
    now = now_us()
    async with db.transaction() as tx:
        dead = await sweeps.abandoned(tx, now, now - int(lease_seconds * 1e6))
        for log in dead:
            frames = last_round(all_frames(await sweeps.batches_of(tx, log.turn_id)))
            await sweeps.interrupt_answer(
                tx, log.user_id, log.answer_id, last_round_text(frames), reasoning_of(frames)
            )
            seq = max(log.last_seq, log.seq_limit) + 1
            await _end(tx, log, seq, render)
        unlogged = await sweeps.unlogged(tx, now)
        for user_id, session_id, answer_id in unlogged:
            await sweeps.interrupt_answer(tx, user_id, answer_id, "")
            # Before its first flush a turn sends at most SEND_AHEAD events.
            seq = SEND_AHEAD + 1
            log = repo.LogRow(
                turn_id=answer_id,
                user_id=user_id,
                session_id=session_id,
                replica_id=replica_id,
                answer_id=answer_id,
                last_seq=0,
                seq_limit=SEND_AHEAD,
                cut_from=0,
                stored_bytes=0,
                ended=False,
                create_time_us=now,
                update_time_us=now,
            )
            await _end(tx, log, seq, render)
    return len(dead) + len(unlogged)


async def _end(tx: Tx, log: repo.LogRow, seq: int, render: InterruptedRenderer) -> None:
    """Store the log's last event (FAILED, TURN_INTERRUPTED) with its answer as stored."""
    message: Message | None = None
    try:
        message = await MessageRepository(tx, log.user_id).get(log.session_id, log.answer_id)
    except NotFound:
        message = None
    end = Frame(seq, END, render(message, names.turn(log.session_id, log.turn_id), seq))
    log.last_seq, log.seq_limit, log.ended, log.update_time_us = seq, seq, True, now_us()
    log.stored_bytes += end.size()
    await repo.store(tx, [log], [repo.BatchRow(log.turn_id, seq, seq, True, encode([end]))])


async def purge_old(db: Database, retention_seconds: float) -> int:
    """Forget logs of turns that ended more than ``retention_seconds`` ago."""
    async with db.transaction() as tx:
        return await sweeps.purge_ended(tx, now_us() - int(retention_seconds * 1e6))
