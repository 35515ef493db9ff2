"""The OpenAI-compatible API's listener, built on the chat servicer's turns."""

from __future__ import annotations

import time

from aichat_backend.api.interceptor import RequestInterceptor
from aichat_backend.api.openai_compat.completions import Completions
from aichat_backend.api.openai_compat.http_server import OpenAIServer
from aichat_backend.api.openai_compat.models import ModelList
from aichat_backend.config import Settings
from aichat_backend.engine.sessions import SessionManager
from aichat_backend.wiring.grpc_server import Services

__all__ = ["OpenAIServer", "openai_server"]


def openai_server(
    settings: Settings,
    interceptor: RequestInterceptor,
    services: Services,
    sessions: SessionManager,
) -> OpenAIServer:
    """The same interceptor ladder and the same turns as the gRPC server's."""
    return OpenAIServer(
        interceptor,
        Completions(services.chat, sessions),
        ModelList(services.chat.engine.catalogue, created=int(time.time())),
        max_body_bytes=settings.max_message_bytes,
    )
