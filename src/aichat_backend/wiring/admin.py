"""The operator API's parts, built from the service's and added to its server.

Kept out of server.py so the wiring there stays a few lines: the rate gate, the
servicer, health per model, the background refresh and the start-up model check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aichat.v1 import admin_service_pb2
from grpc_health.v1 import health, health_pb2

from aichat_backend.admin.access import AdminAccess
from aichat_backend.admin.bypass import BypassList, Gate
from aichat_backend.admin.operations import AdminOperations
from aichat_backend.admin.runtime import RuntimeView
from aichat_backend.api.admin_service import AdminServicer
from aichat_backend.config import Settings
from aichat_backend.limits.base import Limiter, LimitSettings
from aichat_backend.metrics import Metrics
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.providers.model_check import CheckResult, CheckState, ModelChecker
from aichat_backend.store.database import Database
from aichat_backend.tools.base import ToolProvider

log = logging.getLogger(__name__)

SERVICE_NAME = admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
MODEL_HEALTH = "aichat.model."  # + the catalogue name


class AdminParts:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        catalogue: ModelCatalogue,
        *,
        turn_owners: Callable[[], list[tuple[str, str]]],
        limiter: Limiter,
        limit_settings: LimitSettings,
        metrics: Metrics,
        tools: ToolProvider | None,
    ) -> None:
        s = settings
        self._catalogue = catalogue
        self._check_at_start = s.model_check
        self.bypass = BypassList(
            db, refresh_seconds=s.bypass_refresh_seconds, api_key_header=s.api_key_header
        )
        self.checker = ModelChecker(
            catalogue, timeout_seconds=s.model_check_timeout_seconds, on_result=self._report
        )
        self.runtime = RuntimeView(
            db=db,
            turn_owners=turn_owners,
            limiter=limiter,
            limit_settings=limit_settings,
            shared_configured=bool(s.redis_url),
            bypass=self.bypass,
            refusals=lambda reason: metrics.registry.get_sample_value(
                "aichat_rate_limited_total", {"reason": reason}
            ),
            replica_id=s.replica_id,
            approval_ttl_seconds=s.approval_ttl_seconds,
            tools=tools,
        )
        self.servicer = AdminServicer(
            AdminAccess(s.admin_user_ids(), s.admin_role_header, s.admin_role),
            AdminOperations(db, self.bypass),
            self.runtime,
            catalogue,
            self.checker,
        )
        self._health: health.aio.HealthServicer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def gate(self, check_rate: Gate) -> Gate:
        return self.bypass.gate(check_rate)

    async def start(self, health_servicer: health.aio.HealthServicer) -> None:
        """The bypass list loaded before the first request; model checks in the background."""
        self._health = health_servicer
        try:
            await self.bypass.reload()
        except Exception as exc:  # the refresh loop keeps trying; start-up goes on
            log.warning("rate-limit bypass list not loaded at start: %s", type(exc).__name__)
        self._tasks.append(asyncio.create_task(self.bypass.run()))
        for entry in self._catalogue.entries():
            await health_servicer.set(
                MODEL_HEALTH + entry.name, health_pb2.HealthCheckResponse.UNKNOWN
            )
        if self._check_at_start:
            self.checker.check_all()  # never awaited here: a dead model must not delay start

    async def _report(self, name: str, result: CheckResult) -> None:
        if self._health is None:
            return
        serving = result.state is CheckState.REACHABLE
        await self._health.set(
            MODEL_HEALTH + name,
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING,
        )

    async def aclose(self) -> None:
        await self.checker.aclose()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
