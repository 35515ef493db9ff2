"""The turn event log, its cross-replica watches and the streams that resume from it."""

from __future__ import annotations

from typing import NamedTuple

from aichat_backend.api.turn_frames import cut_off_end, shrink_end
from aichat_backend.api.turn_limits import TurnLimits
from aichat_backend.api.turn_stream import DetachedTurns, TurnStreams
from aichat_backend.config import Settings
from aichat_backend.store.database import Database
from aichat_backend.turns.cancel import TurnCancels
from aichat_backend.turns.fanout import PgListener, Watches
from aichat_backend.turns.log import TurnEventLog
from aichat_backend.turns.reader import TurnReader


class TurnParts(NamedTuple):
    log: TurnEventLog
    watches: Watches
    streams: TurnStreams


def turn_parts(db: Database, settings: Settings, limits: TurnLimits) -> TurnParts:
    turn_log = TurnEventLog(
        db,
        settings.replica_id,
        flush_seconds=settings.turn_events_flush_seconds,
        max_bytes=settings.turn_events_max_bytes,
    )
    turn_log.end_renderer = cut_off_end
    turn_log.end_shrinker = shrink_end
    # Other replicas' turns: woken by PostgreSQL NOTIFY; SQLite is one process.
    many = db.dialect == "postgresql"
    watches = PgListener(db.url, settings.db_connect_timeout_seconds) if many else Watches()
    reader = TurnReader(
        db,
        turn_log,
        watches,
        poll_seconds=settings.heartbeat_seconds,
        missing_reads=2 if many else 1,
        heartbeat_seconds=settings.heartbeat_seconds,
    )
    detached = DetachedTurns(turn_log, limits, settings.turn_detached_max_seconds, reader)
    streams = TurnStreams(
        log=turn_log,
        reader=reader,
        detached=detached,
        cancels=TurnCancels(
            db, turn_log, watches, detached.runs, settings.turn_events_flush_seconds
        ),
        detached_default=settings.turn_detached_default,
    )
    return TurnParts(turn_log, watches, streams)
