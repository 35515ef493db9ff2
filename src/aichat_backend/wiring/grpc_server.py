"""The one grpc.aio server: its options, its interceptor and every servicer on it."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from aichat.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    chat_service_pb2,
    chat_service_pb2_grpc,
    session_service_pb2,
    session_service_pb2_grpc,
    tool_service_pb2,
    tool_service_pb2_grpc,
)
from grpc_health.v1 import health, health_pb2_grpc

from aichat_backend.api import reflection
from aichat_backend.api.admin_service import AdminServicer
from aichat_backend.api.chat_service import ChatServicer
from aichat_backend.api.health_service import HealthServicer
from aichat_backend.api.interceptor import RequestInterceptor
from aichat_backend.api.session_service import SessionServicer
from aichat_backend.api.tool_service import ToolServicer
from aichat_backend.config import Settings

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


@dataclass(slots=True)
class Services:
    """Every servicer the server carries (built in server.py)."""

    sessions: SessionServicer
    chat: ChatServicer
    tools: ToolServicer
    admin: AdminServicer
    health: HealthServicer


def build_server(
    settings: Settings, interceptor: RequestInterceptor, services: Services
) -> grpc.aio.Server:
    """The server with every service added, not yet listening."""
    server = grpc.aio.server(interceptors=[interceptor], options=server_options(settings))
    session_service_pb2_grpc.add_SessionServiceServicer_to_server(services.sessions, server)
    chat_service_pb2_grpc.add_ChatServiceServicer_to_server(services.chat, server)
    tool_service_pb2_grpc.add_ToolServiceServicer_to_server(services.tools, server)
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(services.admin, server)
    health_pb2_grpc.add_HealthServicer_to_server(services.health, server)
    reflection.enable(server, [*SERVICE_NAMES, health.SERVICE_NAME])
    return server
