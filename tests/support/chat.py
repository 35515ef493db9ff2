"""A real server wired to a fake upstream speaking a real provider's wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb

from aichat_devtools.fake_llm import FakeLLMServer
from tests.support.grpc_helpers import md
from tests.support.server import Running, make_settings, running_server

MODELS = {"openai": "gpt-test", "anthropic": "claude-test"}


@dataclass
class ChatStack:
    server: Running
    fake: FakeLLMServer
    provider: str

    async def new_session(self, user: str, **fields: Any) -> str:
        s = await self.server.sessions.CreateSession(
            spb.CreateSessionRequest(session=rpb.Session(**fields)), metadata=md(user)
        )
        return s.name

    async def turn(
        self, user: str, session: str, text: str, **kw: Any
    ) -> list[cpb.StreamChatResponse]:
        call = self.server.chat.StreamChat(
            cpb.StreamChatRequest(session=session, text=text, **kw), metadata=md(user)
        )
        return [event async for event in call]

    async def messages(self, user: str, session: str) -> list[rpb.Message]:
        page = await self.server.sessions.ListMessages(
            spb.ListMessagesRequest(parent=session), metadata=md(user)
        )
        return list(page.messages)


def provider_settings(provider: str, fake: FakeLLMServer) -> dict[str, Any]:
    return {
        "llm_provider": provider,
        "llm_model": MODELS[provider],
        "llm_base_url": fake.base_url if provider == "openai" else fake.root_url,
        "api_key": "test-key",
        "provider_max_retries": 1,
    }


@asynccontextmanager
async def chat_stack(
    provider: str, database_url: str, **overrides: Any
) -> AsyncIterator[ChatStack]:
    async with FakeLLMServer() as fake:
        values = provider_settings(provider, fake)
        values.update(overrides)
        async with running_server(make_settings(database_url, **values)) as server:
            yield ChatStack(server=server, fake=fake, provider=provider)
