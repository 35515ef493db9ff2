"""The chat engine driven directly: no gRPC, no database, the fake upstream.

The engine knows nothing of gRPC, and stores a turn through its ports (TurnStore,
SessionStore): here they are the in-memory MemoryStore, which tests/contract holds to
the SQL store's rules, so the turn rules are tested in seconds. What is about the wire
(status codes, metadata, transcoding) or SQL stays in tests/integration.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from aichat_backend import names
from aichat_backend.domain import Message, Session
from aichat_backend.engine.chat import ChatConfig, ChatEngine, TurnRequest
from aichat_backend.engine.events import TurnEvent
from aichat_backend.engine.sessions import SessionLimits, SessionManager
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.tools.base import (
    ApprovalPolicy,
    ServerState,
    ToolAnnotations,
    ToolInfo,
    ToolResult,
    ToolServerInfo,
)
from aichat_backend.wiring.models import model_catalogue
from aichat_devtools.fake_llm import FakeLLMServer
from aichat_devtools.memory_store import MemoryStore
from tests.support.chat import provider_settings
from tests.support.server import make_settings

pytestmark = pytest.mark.timeout(20)


def tool(name: str, *, read_only: bool) -> ToolInfo:
    return ToolInfo(
        server="srv",
        tool=name,
        model_name=f"srv__{name}",
        description=f"the {name} tool",
        input_schema={"type": "object", "properties": {"x": {"type": "integer"}}},
        annotations=ToolAnnotations(read_only=read_only),
        approval=ApprovalPolicy.AUTO,
    )


@dataclass
class ToolsAtHand:
    """The engine's tool port (``ToolProvider``) over in-process tools that record calls.

    The MCP pool behind this port is tested against real MCP servers in
    tests/integration/tools; here only what the engine does with calls matters.
    """

    offered: list[ToolInfo]
    calls: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)

    def tools(self) -> list[ToolInfo]:
        return list(self.offered)

    async def refresh(self) -> list[ToolInfo]:
        return self.tools()

    def servers(self) -> list[ToolServerInfo]:
        return [ToolServerInfo("srv", "", "stdio", ServerState.CONNECTED, len(self.offered))]

    def find(self, name: str) -> ToolInfo | None:
        return next((t for t in self.offered if name in (t.model_name, t.resource_name)), None)

    async def call(
        self, tool: ToolInfo, arguments: dict[str, Any], *, user_id: str, timeout: float
    ) -> ToolResult:
        self.calls.append((tool.tool, arguments, user_id))
        return ToolResult(
            text=f"{tool.tool} says {arguments.get('x')}", is_error=False, duration_ms=1
        )


@dataclass
class EngineStack:
    engine: ChatEngine
    store: MemoryStore
    fake: FakeLLMServer
    sessions: SessionManager
    tools: ToolsAtHand
    catalogue: ModelCatalogue
    engine_config: ChatConfig

    def another_engine(self) -> ChatEngine:
        """A second replica: its own engine over the same store."""
        config = dataclasses.replace(self.engine_config, replica_id="replica-2")
        return ChatEngine(self.store, self.catalogue, config, tools=self.tools)

    async def new_session(self, user: str, **fields: Any) -> str:
        return (await self.sessions.create(user, Session(user_id=user, id="", **fields))).name

    def request(self, user: str, session: str, text: str, **kw: Any) -> TurnRequest:
        kw.setdefault("deadline", time.monotonic() + 15)
        return TurnRequest(user_id=user, session=session, text=text, **kw)

    async def turn(self, user: str, session: str, text: str, **kw: Any) -> list[TurnEvent]:
        return [e async for e in self.engine.stream_turn(self.request(user, session, text, **kw))]

    async def messages(self, user: str, session: str) -> Sequence[Message]:
        return await self.store.list_messages(user, names.parse_session(session), 1000, -1)

    def usage(self) -> list[tuple[str, int, int]]:
        """(model, output tokens, model calls) of every usage row, as the budget reads it."""
        return [(model, out, calls) for (_, _, model), (_, out, calls) in self.store.usage()]


@asynccontextmanager
async def engine_stack(
    fake: FakeLLMServer, catalogue: ModelCatalogue, config: ChatConfig | None = None
) -> AsyncIterator[EngineStack]:
    """An engine over a MemoryStore and in-process tools, answering with ``catalogue``."""
    store = MemoryStore(idempotency_ttl_seconds=60)
    tools = ToolsAtHand([tool("look", read_only=True), tool("change", read_only=False)])
    config = config or ChatConfig(heartbeat_seconds=5.0, memory_default=20)
    engine = ChatEngine(store, catalogue, config, tools=tools)
    sessions = SessionManager(store, SessionLimits(memory_max=100, idempotency_ttl_seconds=60))
    try:
        yield EngineStack(engine, store, fake, sessions, tools, catalogue, config)
    finally:
        engine.stop_all()
        await engine.drain_writes()
        await catalogue.aclose()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[EngineStack]:
    async with FakeLLMServer() as fake:
        # The settings name the fake upstream; no database is opened.
        settings = make_settings(
            f"sqlite:///{tmp_path / 'unused.db'}", **provider_settings("openai", fake)
        )
        async with engine_stack(fake, model_catalogue(settings)) as built:
            yield built


@pytest.fixture
def user() -> str:
    return "engine-user"
