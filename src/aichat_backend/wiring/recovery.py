"""What a crash left behind: ended at start-up, then swept for as long as the app runs."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aichat_backend.api.turn_frames import interrupted_end
from aichat_backend.store.idempotency_repo import purge_expired
from aichat_backend.store.turns_repo import sweep_interrupted
from aichat_backend.turns.recovery import purge_old, recover_abandoned
from aichat_backend.wiring.configs import idempotency_ttl_seconds

if TYPE_CHECKING:
    from aichat_backend.server import App

# The name these lines had when server.py wrote them: log filters and searches keep working.
log = logging.getLogger("aichat_backend.server")

PURGE_EVERY_ROUNDS = 60


async def recover_at_start(app: App) -> None:
    """Answers and turn event logs this replica (or a crashed one) left unfinished."""
    settings = app.settings
    async with app.db.transaction() as tx:
        interrupted = await sweep_interrupted(tx, starting_owner=settings.replica_id)
    if interrupted:
        log.warning("marked answers left unfinished by a crash", extra={"count": interrupted})
    recovered = await recover_abandoned(
        app.db,
        interrupted_end,
        stale_seconds=settings.turn_lease_seconds,
        starting_replica=settings.replica_id,
    )
    if recovered:
        log.warning("ended turn event logs left by a crash", extra={"count": recovered})


async def housekeeping(app: App) -> None:
    settings = app.settings
    ttl = idempotency_ttl_seconds(settings)
    # Often enough that a crashed replica's sessions are freed soon after its leases end.
    interval = settings.turn_lease_seconds
    rounds = 0
    while True:
        try:
            async with app.db.transaction() as tx:
                interrupted = await sweep_interrupted(tx)
                purged = await purge_expired(tx, ttl) if rounds % PURGE_EVERY_ROUNDS == 0 else 0
            await recover_abandoned(
                app.db, interrupted_end, stale_seconds=settings.turn_lease_seconds
            )
            await purge_old(app.db, settings.turn_events_retention_seconds)
            if interrupted or purged:
                log.info(
                    "housekeeping",
                    extra={"interrupted": interrupted, "purged_request_ids": purged},
                )
        except Exception as exc:  # keep housekeeping alive through database trouble
            log.warning("housekeeping failed: %s", type(exc).__name__)
        rounds += 1
        await asyncio.sleep(interval)
