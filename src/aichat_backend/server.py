"""Wiring: settings → database → managers → servicers → one grpc.aio server.

The only place that knows every part; each part gets its collaborators here. What each
group of wiring owns lives in ``aichat_backend.wiring``; this file keeps the order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2

from aichat_backend.api.chat_service import ChatServicer
from aichat_backend.api.export import ExportSlots
from aichat_backend.api.interceptor import RequestInterceptor
from aichat_backend.api.session_service import SessionServicer
from aichat_backend.api.tool_service import ToolServicer
from aichat_backend.api.turn_limits import TurnLimits
from aichat_backend.config import Settings, process_environment
from aichat_backend.engine.branches import Branches
from aichat_backend.engine.chat import ChatEngine
from aichat_backend.engine.direct_calls import DirectToolCaller
from aichat_backend.engine.feedback import FeedbackManager
from aichat_backend.engine.observer import Observers
from aichat_backend.engine.sessions import SessionManager
from aichat_backend.limits.factory import build_limiter
from aichat_backend.metrics import Metrics
from aichat_backend.store import migrate_process
from aichat_backend.store.database import Database
from aichat_backend.store.session_store import SqlSessionStore
from aichat_backend.store.storage import StorageQuota
from aichat_backend.store.turn_store import SqlTurnStore
from aichat_backend.tools.base import ToolProvider
from aichat_backend.user_usage import UsageReader
from aichat_backend.wiring import configs, recovery
from aichat_backend.wiring.admin import AdminParts
from aichat_backend.wiring.dependency_health import (
    LIMITS_HEALTH,
    LIMITS_NOT_SHARED,
    READINESS_HEALTH,
    TOOLS_HEALTH,
    health_servicer,
    report_dependencies,
    watch_dependencies,
)
from aichat_backend.wiring.grpc_server import (
    METADATA_LIMIT,
    SERVICE_NAMES,
    Services,
    build_server,
    server_options,
)
from aichat_backend.wiring.models import model_catalogue
from aichat_backend.wiring.openai_door import OpenAIServer, openai_server
from aichat_backend.wiring.turn_parts import turn_parts

if TYPE_CHECKING:
    from aichat_backend.tools.pool import MCPPool

# Importable from here as before the wiring moved out.
__all__ = [
    "LIMITS_HEALTH",
    "LIMITS_NOT_SHARED",
    "METADATA_LIMIT",
    "READINESS_HEALTH",
    "SERVICE_NAMES",
    "TOOLS_HEALTH",
    "App",
    "model_catalogue",
    "server_options",
]

log = logging.getLogger(__name__)


class CannotListen(OSError):
    """The gRPC address is taken (another server?) or not one this host has."""

    def __init__(self, address: str) -> None:
        super().__init__(
            f"cannot listen on {address}: the port is taken (another aichat-backend?) "
            "or the host is not an address of this machine; set AICHAT_GRPC_ADDRESS"
        )


class App:
    """The running service: start, serve, shut down gracefully."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings)
        ttl = configs.idempotency_ttl_seconds(settings)
        quota = StorageQuota(settings.storage_quota_bytes, settings.exempt_users())
        self.turn_store = SqlTurnStore(self.db, ttl, quota)
        session_store = SqlSessionStore(self.db, ttl, quota)
        self.catalogue = model_catalogue(settings)
        self.sessions = SessionManager(
            session_store,
            configs.session_limits(settings),
            # A session on a model we do not have is refused when made, not at its first turn.
            model_exists=self.catalogue.has,
        )
        self.metrics = Metrics()
        self.exports = ExportSlots(settings.max_concurrent_exports_per_user)
        self.limit_settings = configs.limit_settings(settings, self.catalogue.currency)
        self.limiter = build_limiter(self.limit_settings, settings.redis_url)
        self.limits = TurnLimits(
            self.limiter, lambda reason: self.metrics.rate_limited.labels(reason).inc()
        )
        self.metrics_port = 0
        self.pool: MCPPool | None = None
        if settings.mcp_servers_file is not None:
            # Imported only when tools are configured: the MCP SDK costs ~25 MB to load.
            from aichat_backend.tools import run_as
            from aichat_backend.tools.config import load_servers_file
            from aichat_backend.tools.pool import MCPPool

            servers = load_servers_file(settings.mcp_servers_file, environ=process_environment())
            # A root backend's stdio servers run as users of their own (see run_as).
            servers = run_as.apply(servers, settings.mcp_stdio_user, settings.data_dir)
            self.pool = MCPPool(servers)
        self.tools: ToolProvider | None = self.pool
        self.turn_log, self.turn_watches, self.turn_streams = turn_parts(
            self.db, settings, self.limits
        )
        self.engine = ChatEngine(
            self.turn_store,
            self.catalogue,
            configs.chat_config(settings),
            tools=self.tools,
            observer=Observers(self.metrics, self.turn_log),
            pdf=configs.pdf_extractor(settings),
        )
        self.turn_streams.cancels.bind(self.engine.cancel_turn)
        self.direct_calls = DirectToolCaller(
            session_store, self.tools, timeout_seconds=settings.tool_timeout_seconds
        )
        self.health = health_servicer(settings)
        self.admin = AdminParts(
            settings,
            self.db,
            self.catalogue,
            turn_owners=self.engine.active_turn_owners,
            limiter=self.limiter,
            limit_settings=self.limit_settings,
            metrics=self.metrics,
            tools=self.tools,
        )
        self.services = Services(
            sessions=SessionServicer(
                self.sessions,
                FeedbackManager(session_store),
                UsageReader(self.db, self.limit_settings),
                self.exports,
                branches=Branches(session_store, configs.session_limits(settings).page_max_bytes),
            ),
            chat=ChatServicer(
                self.engine,
                self.limits,
                self.metrics.active_streams,
                model_checks=self.admin.checker,
                turns=self.turn_streams,
            ),
            tools=ToolServicer(self.tools, self.direct_calls, self.limits),
            admin=self.admin.servicer,
            health=self.health,
        )
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.openai: OpenAIServer | None = None
        self.openai_port = 0
        self._background: list[asyncio.Task[None]] = []

    async def start(self, address: str | None = None, *, migrate_in_child: bool = False) -> int:
        """``migrate_in_child``: what a serving process wants (see ``store/migrate_process``);
        in-process by default, as for tests and tools that embed the app."""
        if migrate_in_child:
            await migrate_process.migrate_in_child(self.settings, self.db)
        else:
            await self.db.migrate()
        if self.pool is not None:
            await self.pool.start()  # connects in the background; never delays start-up
        probe = getattr(self.limiter, "probe", None)
        if probe is not None:
            await probe()  # a Redis that is down at boot shows in health at once
        await recovery.recover_at_start(self.turn_store, self.db, self.settings)
        await self.turn_watches.start()
        interceptor = RequestInterceptor(
            self.settings.auth_header,
            self.settings.max_user_id_length,
            observer=self.metrics,
            gate=self.admin.gate(self.limits.check_rate),
            max_response_bytes=self.settings.max_message_bytes,
        )
        server = build_server(self.settings, interceptor, self.services)
        address = address or self.settings.grpc_address
        try:
            self.port = server.add_insecure_port(address)
        except RuntimeError:  # grpc's "Failed to bind": taken, or not an address of ours
            self.port = 0
        if self.port == 0:
            raise CannotListen(address)
        await self.admin.start(self.health)
        await server.start()
        self.server = server
        if self.settings.openai_address:
            self.openai = openai_server(self.settings, interceptor, self.services, self.sessions)
            self.openai_port = await self.openai.start(self.settings.openai_address)
        if self.settings.metrics_address:
            self.metrics_port = self.metrics.serve(self.settings.metrics_address)
        for name in ["", *SERVICE_NAMES]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        watched = (self.db, self.health, self.limiter if self.settings.redis_url else None)
        await report_dependencies(*watched, self.tools)
        self._background.append(
            asyncio.create_task(recovery.housekeeping(self.turn_store, self.db, self.settings))
        )
        self._background.append(asyncio.create_task(watch_dependencies(*watched, self.tools)))
        log.info(
            "serving",
            extra={"address": address, "port": self.port, "openai_port": self.openai_port},
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first (load balancers move away), then drain, stop, dispose.

        Each part closes after everything that writes to it: turns before the turn log,
        the turn log before the database.
        """
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        if self.openai is not None:  # new OpenAI-API requests get 503 from now on
            self.openai.refuse_new()
        await self.health.enter_graceful_shutdown()
        await cancel_all(self._background)
        if self.server is not None:
            log.info("draining", extra={"grace_seconds": grace, "turns": self.engine.active_turns})
            stopping = asyncio.create_task(self.server.stop(grace + 1.0))
            # Turns get the grace period to finish; past it they end CANCELLED with what
            # they have stored and a last event, while the server still delivers it.
            if not await self.engine.wait_idle(grace):
                self.engine.stop_all()
            await stopping
        if self.openai is not None:  # its turns have ended: their last events are written
            await self.openai.stop(timeout=1.0)
        await self.engine.drain_writes()
        await self.turn_streams.detached.close()
        await self.turn_log.close()  # the last events of every turn stored
        await self.turn_watches.close()
        await self.admin.aclose()
        await self.catalogue.aclose()
        await self.limiter.aclose()
        if self.pool is not None:
            await self.pool.aclose()
        self.metrics.close()
        await self.db.dispose()
        log.info("stopped")


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
