"""What the pool knows of one tool server: state, tools, and the last failure in two wordings.

``last_error`` is the detail (a command path, a host, an OS error) for logs and operators;
``user_error`` is a generic reason any user may see (ListToolServers, tool results): the
inside of a deployment is not every user's business.

Each change returns whether the server's tools changed, so the pool knows when to rebuild
its catalogue.
"""

from __future__ import annotations

import mcp_types as types

from aichat_backend.tools.base import ServerState, ToolServerInfo
from aichat_backend.tools.config import ServerConfig

CANNOT_CONNECT = "the tool server could not be started or reached"
NO_ANSWER = "the tool server did not answer in time"
CONNECTION_LOST = "the connection to the tool server was lost"
LISTING_FAILED = "the tool server could not list its tools"
POOL_CLOSED = "the tool pool is closed"


class ServerStatus:
    def __init__(self, config: ServerConfig) -> None:
        self._config = config
        self.state = ServerState.CONNECTING if config.enabled else ServerState.DISABLED
        self.last_error = ""
        self.user_error = ""
        self.tools: list[types.Tool] = []  # allow-listed, each name once
        self.attempted = False  # the first attempt has ended (connected or failed)
        self.connects = 0

    def connecting(self) -> bool:
        was_connected = self.state is ServerState.CONNECTED
        self.state = ServerState.CONNECTING
        return was_connected

    def connected(self, tools: list[types.Tool]) -> bool:
        self.tools = self.allowed(tools)
        self.state = ServerState.CONNECTED
        self.last_error = self.user_error = ""
        self.attempted = True
        self.connects += 1
        return True

    def listed(self, tools: list[types.Tool]) -> bool:
        self.tools = self.allowed(tools)
        return True

    def listing_failed(self, detail: str) -> bool:
        self.last_error, self.user_error = detail, LISTING_FAILED
        return False

    def failed(self, detail: str, generic: str) -> bool:
        was_connected = self.state is ServerState.CONNECTED
        self.state = ServerState.FAILED
        self.last_error = detail or "connection lost"
        self.user_error = generic
        self.tools = []
        self.attempted = True
        return was_connected

    def closed(self) -> None:
        self.last_error, self.user_error = "the pool is closed", POOL_CLOSED

    def allowed(self, tools: list[types.Tool]) -> list[types.Tool]:
        seen: set[str] = set()
        allowed = []
        for tool in tools:
            if self._config.allows(tool.name) and tool.name not in seen:
                seen.add(tool.name)
                allowed.append(tool)
        return allowed

    def info(self) -> ToolServerInfo:
        config = self._config
        return ToolServerInfo(
            name=config.name,
            description=config.description,
            transport=config.transport,
            state=self.state,
            tool_count=len(self.tools) if self.state is ServerState.CONNECTED else 0,
            last_error=self.last_error,
            user_error=self.user_error,
        )
