"""The order of stopping: NOT_SERVING first (load balancers move away), drain, close, dispose.

Each part closes after everything that writes to it: turns before the turn log, the
turn log before the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aichat_backend.server import App

# The name these lines had when server.py wrote them: log filters and searches keep working.
log = logging.getLogger("aichat_backend.server")


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def stop(app: App, grace: float, background: list[asyncio.Task[None]]) -> None:
    await app.health.enter_graceful_shutdown()
    await cancel_all(background)
    if app.server is not None:
        log.info("draining", extra={"grace_seconds": grace, "turns": app.engine.active_turns})
        stopping = asyncio.create_task(app.server.stop(grace + 1.0))
        # Turns get the grace period to finish; past it they end CANCELLED with what
        # they have stored and a last event, while the server still delivers it.
        if not await app.engine.wait_idle(grace):
            app.engine.stop_all()
        await stopping
    await app.engine.drain_writes()
    await app.turn_streams.detached.close()
    await app.turn_log.close()  # the last events of every turn stored
    await app.turn_watches.close()
    await app.admin.aclose()
    await app.catalogue.aclose()
    await app.limiter.aclose()
    if app.pool is not None:
        await app.pool.aclose()
    app.metrics.close()
    await app.db.dispose()
    log.info("stopped")
