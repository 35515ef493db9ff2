"""The stored side of turn event logs: one row per turn, its events in batch rows.

Written by the log's flusher once per tick for every turn with new events (one
transaction for all of them, never per token), read by resuming clients. On
PostgreSQL the flush ends with one NOTIFY naming the turns it stored, delivered to the
other replicas' listeners when it commits: a reader woken by it always finds the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite

from aichat_backend.domain import MessageState
from aichat_backend.store.database import Tx
from aichat_backend.store.tables import messages, sessions, turn_event_batches, turn_logs

NOTIFY_CHANNEL = "aichat_turn_events"
# CancelTurn's word to the replica running the turn: the payload is the turn's id.
CANCEL_CHANNEL = "aichat_turn_cancel"
NOTIFY_MAX_BYTES = 7000  # PostgreSQL refuses payloads of 8000 bytes or more


@dataclass(slots=True)
class LogRow:
    turn_id: str
    user_id: str
    session_id: str
    replica_id: str
    answer_id: str  # the answer the turn's current round writes
    last_seq: int
    seq_limit: int  # no event above it was sent before the next flush
    cut_from: int  # the first event not kept (past the size bound); 0: none
    stored_bytes: int
    ended: bool
    create_time_us: int
    update_time_us: int


@dataclass(slots=True)
class BatchRow:
    turn_id: str
    first_seq: int
    last_seq: int
    final: bool
    data: bytes


def _upsert(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(turn_logs)
    return stmt.on_conflict_do_update(
        index_elements=[turn_logs.c.turn_id],
        set_={
            "answer_id": stmt.excluded.answer_id,
            "last_seq": stmt.excluded.last_seq,
            "seq_limit": stmt.excluded.seq_limit,
            "cut_from": stmt.excluded.cut_from,
            "stored_bytes": stmt.excluded.stored_bytes,
            "ended": stmt.excluded.ended,
            "update_time_us": stmt.excluded.update_time_us,
        },
        # An ended log is final: a flush retried after a lost commit, or a replica that
        # lost its lease after another one ended its turn, changes nothing.
        where=~turn_logs.c.ended,
    )


_UPSERTS = {"postgresql": _upsert("postgresql"), "sqlite": _upsert("sqlite")}
# A flush retried after a commit whose answer was lost stores the same batch again.
_INSERT_BATCHES = {
    "postgresql": postgresql.insert(turn_event_batches).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(turn_event_batches).on_conflict_do_nothing(),
}
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")

# A resume's whole read: the turn (owner-scoped) with its batches after a sequence
# number, in one statement.
_READ = (
    select(
        turn_logs.c.last_seq.label("log_last_seq"),
        turn_logs.c.ended,
        turn_logs.c.cut_from,
        turn_logs.c.create_time_us,
        turn_logs.c.update_time_us,
        turn_event_batches.c.first_seq,
        turn_event_batches.c.data,
    )
    .select_from(
        turn_logs.outerjoin(
            turn_event_batches,
            and_(
                turn_event_batches.c.turn_id == turn_logs.c.turn_id,
                # The batch with the last event always comes: a resume past the end
                # gets the turn's last event.
                or_(
                    turn_event_batches.c.last_seq > bindparam("p_after"),
                    turn_event_batches.c.final,
                ),
            ),
        )
    )
    .where(
        and_(
            turn_logs.c.turn_id == bindparam("p_turn"),
            turn_logs.c.user_id == bindparam("p_user"),
            turn_logs.c.session_id == bindparam("p_sid"),
        )
    )
    .order_by(turn_event_batches.c.first_seq)
)
# A turn with no log yet: it holds its session (running, nothing flushed yet), or its
# first answer (which carries the turn's id) is still being written (it crashed before
# its first flush, and the crash recovery will end it).
_CLAIMED = select(sessions.c.id).where(
    and_(
        sessions.c.user_id == bindparam("p_user"),
        sessions.c.id == bindparam("p_sid"),
        sessions.c.active_turn_id == bindparam("p_turn"),
    )
)
_BEING_WRITTEN = select(messages.c.id).where(
    and_(
        messages.c.user_id == bindparam("p_user"),
        messages.c.id == bindparam("p_turn"),
        messages.c.session_id == bindparam("p_sid"),
        messages.c.state == MessageState.STREAMING.value,
    )
)
# Sequence numbers are INTEGER columns: a reader asking past the largest one asks past
# the end (the number is compared in SQL, where a larger one does not fit).
MAX_SEQ = 2**31 - 1


# CancelTurn's look at a turn (owner-scoped): whether it holds its session with a valid
# lease, and whether its log has ended; no row when the session is not the user's.
_STATE = (
    select(
        and_(
            sessions.c.active_turn_id == bindparam("p_turn"),
            sessions.c.active_turn_expires_us >= bindparam("p_now"),
        ).label("running"),
        turn_logs.c.ended,
    )
    .select_from(
        sessions.outerjoin(
            turn_logs,
            and_(
                turn_logs.c.turn_id == bindparam("p_turn"),
                turn_logs.c.user_id == sessions.c.user_id,
                turn_logs.c.session_id == sessions.c.id,
            ),
        )
    )
    .where(and_(sessions.c.user_id == bindparam("p_user"), sessions.c.id == bindparam("p_sid")))
)


async def store(tx: Tx, logs: Sequence[LogRow], batches: Sequence[BatchRow]) -> None:
    """One flush: the turns' rows brought up to date, their new batches added."""
    dialect = tx.dialect.name
    await tx.execute(_UPSERTS[dialect], [_log_params(r) for r in logs])
    if batches:
        await tx.execute(
            _INSERT_BATCHES[dialect],
            [
                {
                    "turn_id": b.turn_id,
                    "first_seq": b.first_seq,
                    "last_seq": b.last_seq,
                    "final": b.final,
                    "data": b.data,
                }
                for b in batches
            ],
        )
    if dialect == "postgresql":
        for payload in notify_payloads(logs):
            await tx.execute(_NOTIFY, {"channel": NOTIFY_CHANNEL, "payload": payload})


def notify_payloads(logs: Sequence[LogRow]) -> list[str]:
    """``turn:last_seq`` items, comma separated, in payloads PostgreSQL accepts."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for r in logs:
        item = f"{r.turn_id}:{r.last_seq}"
        if current and size + len(item) + 1 > NOTIFY_MAX_BYTES:
            out.append(",".join(current))
            current, size = [], 0
        current.append(item)
        size += len(item) + 1
    if current:
        out.append(",".join(current))
    return out


def _log_params(r: LogRow) -> dict[str, Any]:
    return {
        "turn_id": r.turn_id,
        "user_id": r.user_id,
        "session_id": r.session_id,
        "replica_id": r.replica_id,
        "answer_id": r.answer_id,
        "last_seq": r.last_seq,
        "seq_limit": r.seq_limit,
        "cut_from": r.cut_from,
        "stored_bytes": r.stored_bytes,
        "ended": r.ended,
        "create_time_us": r.create_time_us,
        "update_time_us": r.update_time_us,
    }


@dataclass(slots=True)
class StoredLog:
    last_seq: int
    ended: bool
    update_time_us: int
    batches: list[tuple[int, bytes]]  # (first seq, encoded frames), in order
    cut_from: int = 0  # the first event not kept (past the size bound); 0: none
    create_time_us: int = 0


async def read_after(
    tx: Tx, user_id: str, session_id: str, turn_id: str, after: int
) -> StoredLog | None:
    """The turn's stored batches that hold a frame with ``seq > after`` or its last one
    (None if the user has no such log)."""
    params = {
        "p_turn": turn_id,
        "p_user": user_id,
        "p_sid": session_id,
        "p_after": min(after, MAX_SEQ),
    }
    rows = (await tx.execute(_READ, params)).all()
    if not rows:
        return None
    head = rows[0]
    batches = [(r.first_seq, r.data) for r in rows if r.data is not None]
    return StoredLog(
        head.log_last_seq,
        head.ended,
        head.update_time_us,
        batches,
        head.cut_from,
        head.create_time_us,
    )


async def is_claimed(tx: Tx, user_id: str, session_id: str, turn_id: str) -> bool:
    """Whether a turn without a log is still to come: it holds its session (running,
    nothing flushed yet), or its first answer is still being written (its replica
    crashed before the first flush; the crash recovery ends it)."""
    params = {"p_user": user_id, "p_sid": session_id, "p_turn": turn_id}
    if (await tx.scalar(_CLAIMED, params)) is not None:
        return True
    return (await tx.scalar(_BEING_WRITTEN, params)) is not None


async def turn_state(
    tx: Tx, user_id: str, session_id: str, turn_id: str, now_us: int
) -> str | None:
    """ "running" (it holds its session), "ended", "stopped" (its log never ended: a crash
    the sweep has not reached yet), or None when the user has no such turn."""
    params = {"p_user": user_id, "p_sid": session_id, "p_turn": turn_id, "p_now": now_us}
    row = (await tx.execute(_STATE, params)).first()
    if row is None:
        return None
    if row.running:
        return "running"
    if row.ended is None:
        return None
    return "ended" if row.ended else "stopped"


async def notify_cancel(tx: Tx, turn_id: str) -> None:
    """Tell every replica (PostgreSQL only) that ``turn_id`` is to stop."""
    if tx.dialect.name == "postgresql":
        await tx.execute(_NOTIFY, {"channel": CANCEL_CHANNEL, "payload": turn_id})
