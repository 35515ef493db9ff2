"""What a crash left behind: ended at start-up, then swept for as long as the app runs."""

from __future__ import annotations

import asyncio
import logging

from aichat_backend.api.turn_frames import interrupted_end, reasoning_text
from aichat_backend.config import Settings
from aichat_backend.engine.turn_store import TurnStore
from aichat_backend.store.database import Database
from aichat_backend.store.idempotency_repo import purge_expired
from aichat_backend.turns.recovery import purge_old, recover_abandoned
from aichat_backend.wiring.configs import idempotency_ttl_seconds

# The name these lines had when server.py wrote them: log filters and searches keep working.
log = logging.getLogger("aichat_backend.server")

PURGE_EVERY_ROUNDS = 60


async def recover_at_start(turns: TurnStore, db: Database, settings: Settings) -> None:
    """Turns a crash left unfinished whose lease ran out (a restarted replica's own ones
    too, once theirs runs out: a process with the same replica id may still run them)."""
    recovered, interrupted = await _sweep(turns, db, settings)
    if interrupted:
        log.warning("marked answers left unfinished by a crash", extra={"count": interrupted})
    if recovered:
        log.warning("ended turn event logs left by a crash", extra={"count": recovered})


async def _sweep(turns: TurnStore, db: Database, settings: Settings) -> tuple[int, int]:
    # The logs first: their answers are found by what the logs say their rounds write.
    recovered = await recover_abandoned(
        db,
        interrupted_end,
        lease_seconds=settings.turn_lease_seconds,
        replica_id=settings.replica_id,
        reasoning_of=reasoning_text,
    )
    return recovered, await turns.sweep_interrupted()


async def housekeeping(turns: TurnStore, db: Database, settings: Settings) -> None:
    ttl = idempotency_ttl_seconds(settings)
    # A crashed turn ends within a lease and one interval of its crash.
    interval = settings.turn_sweep_seconds
    purge_every = max(1, round(settings.turn_lease_seconds / interval))
    rounds = 0
    while True:
        try:
            recovered, interrupted = await _sweep(turns, db, settings)
            purged = 0
            if rounds % (PURGE_EVERY_ROUNDS * purge_every) == 0:
                async with db.transaction() as tx:
                    purged = await purge_expired(tx, ttl)
            if rounds % purge_every == 0:
                await purge_old(db, settings.turn_events_retention_seconds)
            if recovered or interrupted or purged:
                log.info(
                    "housekeeping",
                    extra={
                        "recovered_turns": recovered,
                        "interrupted": interrupted,
                        "purged_request_ids": purged,
                    },
                )
        except Exception as exc:  # keep housekeeping alive through database trouble
            log.warning("housekeeping failed: %s", type(exc).__name__)
        rounds += 1
        await asyncio.sleep(interval)
