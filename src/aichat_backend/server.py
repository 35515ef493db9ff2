"""Wiring: settings → database → managers → servicers → one grpc.aio server.

The only place that knows every part; each part gets its collaborators here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from typing import TYPE_CHECKING

import grpc
from aichat.v1 import (
    admin_service_pb2,
    chat_service_pb2,
    chat_service_pb2_grpc,
    session_service_pb2,
    session_service_pb2_grpc,
    tool_service_pb2,
    tool_service_pb2_grpc,
)
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from aichat_backend import hardening
from aichat_backend.admin.wiring import AdminParts
from aichat_backend.api import reflection
from aichat_backend.api.chat_service import ChatServicer
from aichat_backend.api.health_service import HealthServicer
from aichat_backend.api.interceptor import RequestInterceptor
from aichat_backend.api.session_service import SessionServicer
from aichat_backend.api.tool_service import ToolServicer
from aichat_backend.api.turn_frames import cut_off_end, interrupted_end
from aichat_backend.api.turn_limits import TurnLimits
from aichat_backend.api.turn_stream import DetachedTurns, TurnStreams
from aichat_backend.config import ConfigError, Settings, process_environment
from aichat_backend.engine.chat import ChatConfig, ChatEngine
from aichat_backend.engine.direct_calls import DirectToolCaller
from aichat_backend.engine.feedback import FeedbackManager
from aichat_backend.engine.observer import Observers
from aichat_backend.engine.pdf_extractor import PdfExtractor, PdfLimits
from aichat_backend.engine.sessions import SessionLimits, SessionManager
from aichat_backend.limits.base import LimitSettings
from aichat_backend.limits.factory import build_limiter
from aichat_backend.metrics import Metrics
from aichat_backend.providers.base import ModelEntry
from aichat_backend.providers.catalogue import ModelCatalogue, load_catalogue
from aichat_backend.providers.retry import RetryPolicy
from aichat_backend.store import migrate_process
from aichat_backend.store.database import Database
from aichat_backend.store.idempotency_repo import purge_expired
from aichat_backend.store.turns_repo import sweep_interrupted
from aichat_backend.tools.base import ServerState, ToolProvider
from aichat_backend.turns.fanout import PgListener, Watches
from aichat_backend.turns.log import TurnEventLog
from aichat_backend.turns.reader import TurnReader
from aichat_backend.turns.recovery import purge_old, recover_abandoned

if TYPE_CHECKING:
    from aichat_backend.tools.pool import MCPPool

log = logging.getLogger(__name__)

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

SERVICE_NAMES = [
    session_service_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name,
    chat_service_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name,
    tool_service_pb2.DESCRIPTOR.services_by_name["ToolService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
]


METADATA_LIMIT = 64 * 1024


def server_options(settings: Settings) -> list[tuple[str, int]]:
    def ms(seconds: float) -> int:
        return int(seconds * 1000)

    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Long idle streams (waiting on a model or a tool) must survive clients that
        # ping: allow pings this often and never count them as strikes.
        (
            "grpc.http2.min_recv_ping_interval_without_data_ms",
            ms(settings.keepalive_min_ping_interval_seconds),
        ),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        # Our own pings find dead peers on otherwise silent connections.
        ("grpc.keepalive_time_ms", ms(settings.keepalive_time_seconds)),
        ("grpc.keepalive_timeout_ms", ms(settings.keepalive_timeout_seconds)),
        ("grpc.so_reuseport", 0),
        # Above what Envoy admits (16 KiB of URL and headers, forwarded with copies of the
        # path it adds): past gRPC's 8 KiB default soft limit a call is refused as
        # RESOURCE_EXHAUSTED, which REST clients see as a retryable 429.
        ("grpc.max_metadata_size", METADATA_LIMIT),
        ("grpc.absolute_max_metadata_size", METADATA_LIMIT),
    ]


def model_catalogue(settings: Settings) -> ModelCatalogue:
    """The catalogue file if one is set, else the single model the AICHAT_LLM_* describe."""
    if settings.models_file is not None:
        catalogue = load_catalogue(
            settings.models_file,
            process_environment(),
            timeout_seconds=settings.provider_timeout_seconds,
            http_client=settings.llm_http_client,
        )
        return catalogue
    entry = ModelEntry(
        name=settings.llm_model,
        provider=settings.llm_provider,
        model_name=settings.llm_model,
        base_url=settings.llm_base_url,
        api_key=settings.api_key,
        temperature=settings.llm_temperature,
    )
    return ModelCatalogue(
        [entry],
        timeout_seconds=settings.provider_timeout_seconds,
        http_client=settings.llm_http_client,
        key_variable="AICHAT_API_KEY",
    )


class App:
    """The running service: start, serve, shut down gracefully."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings)
        self.catalogue = model_catalogue(settings)
        self.sessions = SessionManager(
            self.db,
            SessionLimits(
                memory_max=settings.memory_max,
                idempotency_ttl_seconds=settings.idempotency_ttl_hours * 3600,
                page_max_bytes=min(settings.list_page_max_bytes, settings.max_message_bytes // 2),
            ),
            # A session on a model we do not have is refused when made, not at its first turn.
            model_exists=self.catalogue.has,
        )
        self.metrics = Metrics()
        self.limit_settings = LimitSettings(
            rate_rps=settings.rate_rps,
            rate_burst=settings.rate_burst,
            max_concurrent_turns=settings.max_concurrent_turns_per_user,
            daily_token_budget=settings.daily_token_budget,
            exempt_users=settings.exempt_users(),
        )
        self.limiter = build_limiter(self.limit_settings, settings.redis_url)
        self.limits = TurnLimits(
            self.limiter, lambda reason: self.metrics.rate_limited.labels(reason).inc()
        )
        self.metrics_port = 0
        self.pool: MCPPool | None = None
        if settings.mcp_servers_file is not None:
            # Imported only when tools are configured: the MCP SDK costs ~25 MB to load.
            from aichat_backend.tools.pool import MCPPool

            self.pool = MCPPool.from_file(settings.mcp_servers_file, environ=process_environment())
        self.tools: ToolProvider | None = self.pool
        self.turn_log = TurnEventLog(
            self.db,
            settings.replica_id,
            flush_seconds=settings.turn_events_flush_seconds,
            max_bytes=settings.turn_events_max_bytes,
        )
        self.turn_log.end_renderer = cut_off_end
        # Other replicas' turns: woken by PostgreSQL NOTIFY; SQLite is one process.
        many = self.db.dialect == "postgresql"
        self.turn_watches = (
            PgListener(self.db.url, settings.db_connect_timeout_seconds) if many else Watches()
        )
        self.turn_streams = TurnStreams(
            log=self.turn_log,
            reader=TurnReader(
                self.db,
                self.turn_log,
                self.turn_watches,
                poll_seconds=settings.heartbeat_seconds,
                missing_reads=2 if many else 1,
            ),
            detached=DetachedTurns(self.turn_log, self.limits, settings.turn_detached_max_seconds),
            detached_default=settings.turn_detached_default,
        )
        self.engine = ChatEngine(
            self.db,
            self.catalogue,
            ChatConfig(
                memory_default=settings.memory_default,
                memory_max=settings.memory_max,
                default_system_prompt=settings.default_system_prompt,
                max_attachment_bytes=settings.max_attachment_bytes,
                max_attachments=settings.max_attachments_per_message,
                heartbeat_seconds=settings.heartbeat_seconds,
                lease_seconds=settings.turn_lease_seconds,
                replica_id=settings.replica_id,
                idempotency_ttl_seconds=settings.idempotency_ttl_hours * 3600,
                retry=RetryPolicy(attempts=settings.provider_max_retries + 1),
                tool_timeout_seconds=settings.tool_timeout_seconds,
                max_tool_rounds=settings.max_tool_rounds,
                approval_ttl_seconds=settings.approval_ttl_seconds,
            ),
            tools=self.tools,
            observer=Observers(self.metrics, self.turn_log),
            pdf=PdfExtractor(
                PdfLimits(
                    max_pages=settings.pdf_max_pages,
                    max_chars=settings.pdf_max_chars,
                    cpu_seconds=settings.pdf_cpu_seconds,
                    timeout_seconds=settings.pdf_timeout_seconds,
                    max_memory_bytes=settings.pdf_max_memory_mib * 1024 * 1024,
                    workers=settings.pdf_workers,
                )
            ),
        )
        self.direct_calls = DirectToolCaller(
            self.db,
            self.tools,
            timeout_seconds=settings.tool_timeout_seconds,
            idempotency_ttl_seconds=settings.idempotency_ttl_hours * 3600,
        )
        self.health = HealthServicer(
            {} if settings.redis_url else {LIMITS_HEALTH: LIMITS_NOT_SHARED}
        )
        self.admin = AdminParts(self)
        self.server: grpc.aio.Server | None = None
        self.port = 0
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
        async with self.db.transaction() as tx:
            interrupted = await sweep_interrupted(tx, starting_owner=self.settings.replica_id)
        if interrupted:
            log.warning("marked answers left unfinished by a crash", extra={"count": interrupted})
        recovered = await recover_abandoned(
            self.db,
            interrupted_end,
            stale_seconds=self.settings.turn_lease_seconds,
            starting_replica=self.settings.replica_id,
        )
        if recovered:
            log.warning("ended turn event logs left by a crash", extra={"count": recovered})
        await self.turn_watches.start()
        server = grpc.aio.server(
            interceptors=[
                RequestInterceptor(
                    self.settings.auth_header,
                    self.settings.max_user_id_length,
                    observer=self.metrics,
                    gate=self.admin.gate(self.limits.check_rate),
                    max_response_bytes=self.settings.max_message_bytes,
                )
            ],
            options=server_options(self.settings),
        )
        session_service_pb2_grpc.add_SessionServiceServicer_to_server(
            SessionServicer(self.sessions, FeedbackManager(self.db)), server
        )
        chat_service_pb2_grpc.add_ChatServiceServicer_to_server(
            ChatServicer(
                self.engine,
                self.limits,
                self.metrics.active_streams,
                model_checks=self.admin.checker,
                turns=self.turn_streams,
            ),
            server,
        )
        tool_service_pb2_grpc.add_ToolServiceServicer_to_server(
            ToolServicer(self.tools, self.direct_calls), server
        )
        self.admin.add_to(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable(server, [*SERVICE_NAMES, health.SERVICE_NAME])
        address = address or self.settings.grpc_address
        self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        await self.admin.start(self.health)
        await server.start()
        self.server = server
        if self.settings.metrics_address:
            self.metrics_port = self.metrics.serve(self.settings.metrics_address)
        for name in ["", *SERVICE_NAMES]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        await self._report_dependencies()
        self._background.append(asyncio.create_task(self._housekeeping()))
        self._background.append(asyncio.create_task(self._watch_dependencies()))
        log.info("serving", extra={"address": address, "port": self.port})
        return self.port

    async def _housekeeping(self) -> None:
        ttl = self.settings.idempotency_ttl_hours * 3600
        # Often enough that a crashed replica's sessions are freed soon after its leases end.
        interval = self.settings.turn_lease_seconds
        rounds = 0
        while True:
            try:
                async with self.db.transaction() as tx:
                    interrupted = await sweep_interrupted(tx)
                    purged = await purge_expired(tx, ttl) if rounds % 60 == 0 else 0
                await recover_abandoned(
                    self.db, interrupted_end, stale_seconds=self.settings.turn_lease_seconds
                )
                await purge_old(self.db, self.settings.turn_events_retention_seconds)
                if interrupted or purged:
                    log.info(
                        "housekeeping",
                        extra={"interrupted": interrupted, "purged_request_ids": purged},
                    )
            except Exception as exc:  # keep housekeeping alive through database trouble
                log.warning("housekeeping failed: %s", type(exc).__name__)
            rounds += 1
            await asyncio.sleep(interval)

    async def _watch_dependencies(self) -> None:
        """Say in health (and logs) what is degraded, without going NOT_SERVING overall.

        Each optional dependency has its own health service name, so load balancers keep
        routing (checking "") while operators see exactly what is wrong.
        """
        while True:
            await self._report_dependencies()
            await asyncio.sleep(2.0)

    async def _report_dependencies(self) -> None:
        serving, not_serving = (
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
        try:
            await self.db.ping()
            ready = serving
        except Exception:  # unreachable, frozen, refused: every request would fail now
            ready = not_serving
        await self.health.set(READINESS_HEALTH, ready)
        if self.settings.redis_url:
            degraded = self.limiter.degraded()
            await self.health.set(LIMITS_HEALTH, not_serving if degraded else serving)
        if self.tools is not None:
            for server in self.tools.servers():
                state = serving if server.state is ServerState.CONNECTED else not_serving
                await self.health.set(f"{TOOLS_HEALTH}/{server.name}", state)

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first (load balancers move away), then drain, stop, dispose."""
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        await self.health.enter_graceful_shutdown()
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.server is not None:
            log.info("draining", extra={"grace_seconds": grace, "turns": self.engine.active_turns})
            stopping = asyncio.create_task(self.server.stop(grace + 1.0))
            # Turns get the grace period to finish; past it they end CANCELLED with what
            # they have stored and a last event, while the server still delivers it.
            if not await self.engine.wait_idle(grace):
                self.engine.stop_all()
            await stopping
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


FULL_COLLECTION_AFTER = 100  # gen-1 collections between full ones (CPython's default: 10)


async def serve(settings: Settings) -> int:
    # Before any child exists: none of them may read this process's /proc files.
    hardening.make_undumpable()
    try:
        app = App(settings)
    except ValueError as exc:  # a bad model catalogue or MCP servers file
        raise ConfigError(str(exc)) from None
    # Every secret has been read into the settings, the catalogue and the tool configs:
    # the environment (and its exec-time copy in /proc/self/environ) no longer needs them.
    removed = hardening.scrub_environment()
    if removed:
        log.info("secrets removed from the environment", extra={"variables": removed})
    # Out of process: what alembic imports would stay in this one for good.
    await app.start(migrate_in_child=True)
    # Everything alive now (modules, descriptors, SDK classes) lives until exit: move it
    # out of the collector's generations so each collection walks only request garbage.
    gc.collect()
    gc.freeze()
    # A full collection walks every object of every held stream (~30 ms with 200 held,
    # measured), pausing all of them at once. After 10 young-generation passes (the
    # default) that happened every few seconds while streams were being added; after 100
    # it did not happen in the same run, and the young generations stay as they were.
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_AFTER)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutdown requested")
    await app.stop()
    return 0
