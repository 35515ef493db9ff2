"""Wiring: settings → database → managers → servicers → one grpc.aio server.

The only place that knows every part; each part gets its collaborators here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import grpc
from aichat.v1 import (
    chat_service_pb2,
    chat_service_pb2_grpc,
    session_service_pb2,
    session_service_pb2_grpc,
    tool_service_pb2,
    tool_service_pb2_grpc,
)
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from aichat_backend.api import reflection
from aichat_backend.api.interceptor import RequestInterceptor
from aichat_backend.api.placeholders import PendingChatServicer, PendingToolServicer
from aichat_backend.api.session_service import SessionServicer
from aichat_backend.config import Settings
from aichat_backend.engine.sessions import SessionLimits, SessionManager
from aichat_backend.store.database import Database
from aichat_backend.store.idempotency_repo import purge_expired

log = logging.getLogger(__name__)

SERVICE_NAMES = [
    session_service_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name,
    chat_service_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name,
    tool_service_pb2.DESCRIPTOR.services_by_name["ToolService"].full_name,
]


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
    ]


class App:
    """The running service: start, serve, shut down gracefully."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings)
        self.sessions = SessionManager(
            self.db,
            SessionLimits(
                memory_max=settings.memory_max,
                idempotency_ttl_seconds=settings.idempotency_ttl_hours * 3600,
            ),
        )
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self._background: list[asyncio.Task[None]] = []

    async def start(self, address: str | None = None) -> int:
        await self.db.migrate()
        server = grpc.aio.server(
            interceptors=[
                RequestInterceptor(self.settings.auth_header, self.settings.max_user_id_length)
            ],
            options=server_options(self.settings),
        )
        session_service_pb2_grpc.add_SessionServiceServicer_to_server(
            SessionServicer(self.sessions), server
        )
        chat_service_pb2_grpc.add_ChatServiceServicer_to_server(PendingChatServicer(), server)
        tool_service_pb2_grpc.add_ToolServiceServicer_to_server(PendingToolServicer(), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable(server, [*SERVICE_NAMES, health.SERVICE_NAME])
        address = address or self.settings.grpc_address
        self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        await server.start()
        self.server = server
        for name in ["", *SERVICE_NAMES]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._background.append(asyncio.create_task(self._housekeeping()))
        log.info("serving", extra={"address": address, "port": self.port})
        return self.port

    async def _housekeeping(self) -> None:
        ttl = self.settings.idempotency_ttl_hours * 3600
        while True:
            try:
                async with self.db.transaction() as tx:
                    purged = await purge_expired(tx, ttl)
                if purged:
                    log.info("purged expired request ids", extra={"count": purged})
            except Exception as exc:  # keep housekeeping alive through database trouble
                log.warning("housekeeping failed: %s", type(exc).__name__)
            await asyncio.sleep(3600)

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
            log.info("draining", extra={"grace_seconds": grace})
            await self.server.stop(grace)
        await self.db.dispose()
        log.info("stopped")


async def serve(settings: Settings) -> int:
    app = App(settings)
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutdown requested")
    await app.stop()
    return 0
