"""Start the real service in-process on a free port, the way server.py wires it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from aichat.v1 import chat_service_pb2_grpc, session_service_pb2_grpc, tool_service_pb2_grpc

from aichat_backend.config import Settings
from aichat_backend.server import App


@dataclass
class Running:
    app: App
    port: int
    channel: grpc.aio.Channel
    sessions: session_service_pb2_grpc.SessionServiceStub
    chat: chat_service_pb2_grpc.ChatServiceStub
    tools: tool_service_pb2_grpc.ToolServiceStub

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "grpc_address": "127.0.0.1:0",
        "shutdown_grace_seconds": 1.0,
        "log_format": "text",
        # Tests send bursts no user would; the limit tests turn it back on.
        "rate_rps": 0,
        # Tests count the requests their fake upstreams see; the check tests turn it on.
        "model_check": False,
        # The test process is root here and the interpreter lives under /root: tool servers
        # run as the test's own user (tests of the switch set it back: test_secrets_from_proc).
        "mcp_stdio_user": "same",
    }
    values.update(overrides)
    return Settings.model_validate(values)


@asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[Running]:
    app = App(settings)
    port = await app.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Running(
            app=app,
            port=port,
            channel=channel,
            sessions=session_service_pb2_grpc.SessionServiceStub(channel),
            chat=chat_service_pb2_grpc.ChatServiceStub(channel),
            tools=tool_service_pb2_grpc.ToolServiceStub(channel),
        )
    finally:
        await channel.close()
        await app.stop(0.5)
