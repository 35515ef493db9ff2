"""Health per dependency: readiness (the database), shared limits (Redis), each tool server.

Each optional dependency has its own health service name, so load balancers keep
routing (checking "") while operators see exactly what is wrong.
"""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2

from aichat_backend.api.health_service import HealthServicer
from aichat_backend.config import Settings
from aichat_backend.limits.base import Limiter
from aichat_backend.store.database import Database
from aichat_backend.tools.base import ServerState, ToolProvider

# Health service names of optional dependencies (degraded, never NOT_SERVING overall).
LIMITS_HEALTH = "aichat.limits.shared"
LIMITS_NOT_SHARED = (
    "limits are per process here: AICHAT_REDIS_URL is not set, so there is no shared "
    "limit store to check"
)
TOOLS_HEALTH = "aichat.tools"
# "" is liveness (the process answers: restart it when this fails); READINESS also needs
# the database (take it out of rotation while this says NOT_SERVING, do not restart it).
READINESS_HEALTH = "aichat.readiness"

REPORT_SECONDS = 2.0


def health_servicer(settings: Settings) -> HealthServicer:
    return HealthServicer({} if settings.redis_url else {LIMITS_HEALTH: LIMITS_NOT_SHARED})


async def watch_dependencies(
    db: Database, health: HealthServicer, shared: Limiter | None, tools: ToolProvider | None
) -> None:
    """Say in health (and logs) what is degraded, without going NOT_SERVING overall."""
    while True:
        await report_dependencies(db, health, shared, tools)
        await asyncio.sleep(REPORT_SECONDS)


async def report_dependencies(
    db: Database, health: HealthServicer, shared: Limiter | None, tools: ToolProvider | None
) -> None:
    """``shared``: the limiter when limits are shared (Redis), else None."""
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    try:
        await db.ping()
        ready = serving
    except Exception:  # unreachable, frozen, refused: every request would fail now
        ready = not_serving
    await health.set(READINESS_HEALTH, ready)
    if shared is not None:
        await health.set(LIMITS_HEALTH, not_serving if shared.degraded() else serving)
    if tools is not None:
        for server in tools.servers():
            state = serving if server.state is ServerState.CONNECTED else not_serving
            await health.set(f"{TOOLS_HEALTH}/{server.name}", state)
