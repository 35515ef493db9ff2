"""What a crash left behind: ended at start-up, then swept for as long as the app runs."""

from __future__ import annotations

import asyncio
import logging

from aichat_backend.api.turn_frames import interrupted_end
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
    """Answers and turn event logs this replica (or a crashed one) left unfinished."""
    interrupted = await turns.sweep_interrupted(starting_owner=settings.replica_id)
    if interrupted:
        log.warning("marked answers left unfinished by a crash", extra={"count": interrupted})
    recovered = await recover_abandoned(
        db,
        interrupted_end,
        stale_seconds=settings.turn_lease_seconds,
        starting_replica=settings.replica_id,
    )
    if recovered:
        log.warning("ended turn event logs left by a crash", extra={"count": recovered})


async def housekeeping(turns: TurnStore, db: Database, settings: Settings) -> None:
    ttl = idempotency_ttl_seconds(settings)
    # Often enough that a crashed replica's sessions are freed soon after its leases end.
    interval = settings.turn_lease_seconds
    rounds = 0
    while True:
        try:
            interrupted = await turns.sweep_interrupted()
            purged = 0
            if rounds % PURGE_EVERY_ROUNDS == 0:
                async with db.transaction() as tx:
                    purged = await purge_expired(tx, ttl)
            await recover_abandoned(db, interrupted_end, stale_seconds=settings.turn_lease_seconds)
            await purge_old(db, settings.turn_events_retention_seconds)
            if interrupted or purged:
                log.info(
                    "housekeeping",
                    extra={"interrupted": interrupted, "purged_request_ids": purged},
                )
        except Exception as exc:  # keep housekeeping alive through database trouble
            log.warning("housekeeping failed: %s", type(exc).__name__)
        rounds += 1
        await asyncio.sleep(interval)
