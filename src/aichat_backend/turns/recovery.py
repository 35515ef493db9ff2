"""Logs whose writer died (a crash, kill -9): the streamed text kept, the log ended.

Run after the crash sweep (``turns_repo.sweep_interrupted``) has marked the answers
INTERRUPTED: at start-up for this replica's own logs, and from housekeeping for logs no
one has flushed for a lease (a running turn flushes a heartbeat every few seconds). The
answer gets the text its log holds (everything up to the last flush before the crash),
and the log its last event, so readers waiting on it end too. Also forgets the logs of
turns that ended longer ago than the retention.
"""

from __future__ import annotations

from collections.abc import Callable

from aichat_backend import names
from aichat_backend.domain import Message, now_us
from aichat_backend.errors import NotFound
from aichat_backend.store import turn_events_repo as repo
from aichat_backend.store import turn_sweeps_repo as sweeps
from aichat_backend.store.database import Database
from aichat_backend.store.messages_repo import MessageRepository
from aichat_backend.turns.frames import END, Frame, all_frames, encode, last_round_text

# (the interrupted answer, or None if it is gone; the turn's name; the last event's seq)
InterruptedRenderer = Callable[[Message | None, str, int], bytes]


async def recover_abandoned(
    db: Database,
    render: InterruptedRenderer,
    *,
    stale_seconds: float,
    starting_replica: str | None = None,
) -> int:
    """End every abandoned log; the number ended."""
    stale_before = now_us() - int(stale_seconds * 1e6)
    async with db.transaction() as tx:
        dead = await sweeps.abandoned(tx, stale_before, starting_replica)
        for log in dead:
            frames = all_frames(await sweeps.batches_of(tx, log.turn_id))
            answer_id = await sweeps.restore_partial(tx, log, last_round_text(frames))
            message: Message | None = None
            if answer_id is not None:
                try:
                    message = await MessageRepository(tx, log.user_id).get(
                        log.session_id, answer_id
                    )
                except NotFound:
                    message = None
            seq = log.last_seq + 1
            end = Frame(seq, END, render(message, names.turn(log.session_id, log.turn_id), seq))
            log.last_seq, log.ended, log.update_time_us = seq, True, now_us()
            log.stored_bytes += end.size()
            await repo.store(tx, [log], [repo.BatchRow(log.turn_id, seq, seq, True, encode([end]))])
    return len(dead)


async def purge_old(db: Database, retention_seconds: float) -> int:
    """Forget logs of turns that ended more than ``retention_seconds`` ago."""
    async with db.transaction() as tx:
        return await sweeps.purge_ended(tx, now_us() - int(retention_seconds * 1e6))
