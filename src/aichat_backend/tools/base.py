"""The tools contract: what the chat engine and ToolService ask of the MCP pool.

Plain data in and out; no MCP SDK type crosses this boundary. A tool that fails (its
server says is_error, it times out, its server is gone) is a ``ToolResult`` with
``is_error=True``, not an exception: the model sees it and the turn goes on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from aichat_backend import names

# Offered names must satisfy every provider's rule for function names.
MODEL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
# The caller's id travels with every call in the request _meta under this key.
USER_ID_META_KEY = "io.aichat/user_id"


class ApprovalPolicy(enum.Enum):
    AUTO = "auto"  # read-only tools (by their annotations) run at once; others ask
    ALWAYS = "always"  # every call asks
    NEVER = "never"  # a trusted server: nothing asks


class ServerState(enum.Enum):
    CONNECTED = "connected"
    CONNECTING = "connecting"
    FAILED = "failed"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class ToolAnnotations:
    title: str = ""
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    open_world: bool = False


@dataclass(frozen=True, slots=True)
class ToolInfo:
    server: str
    tool: str  # the tool's own name on its server
    model_name: str  # "{server}__{tool}", cut to MODEL_NAME_PATTERN, unique
    description: str
    input_schema: dict[str, Any]
    annotations: ToolAnnotations
    approval: ApprovalPolicy  # the effective policy (server policy or per-tool override)

    @property
    def resource_name(self) -> str:
        return names.tool(self.server, self.tool)

    def approval_reason(self) -> str | None:
        """Why a call by the model must wait for the user; None when it may run at once."""
        if self.approval is ApprovalPolicy.NEVER:
            return None
        if self.approval is ApprovalPolicy.ALWAYS:
            return f"server {self.server!r} asks approval for every tool"
        if self.annotations.read_only and not self.annotations.destructive:
            return None
        return "the tool is not marked read-only"


@dataclass(frozen=True, slots=True)
class ToolResult:
    text: str
    is_error: bool
    duration_ms: int
    structured: dict[str, Any] | None = None
    timed_out: bool = False  # is_error because the call ran out of time


@dataclass(frozen=True, slots=True)
class ToolServerInfo:
    name: str
    description: str
    transport: str  # "stdio", "streamable_http" or "sse"
    state: ServerState
    tool_count: int
    # The detail of the last failure (a command path, a host, an OS error): for operators
    # and logs only, never shown to users.
    last_error: str = ""
    # The same failure as a generic reason any user may see.
    user_error: str = ""


@dataclass(slots=True)
class ToolCatalogue:
    tools: list[ToolInfo] = field(default_factory=list)

    def by_model_name(self) -> dict[str, ToolInfo]:
        return {t.model_name: t for t in self.tools}


class ToolProvider(Protocol):
    """The MCP client pool, as the engine and ToolService see it."""

    def tools(self) -> list[ToolInfo]:
        """The cached catalogue: tools of connected servers, allow-lists applied."""
        ...

    async def refresh(self) -> list[ToolInfo]:
        """Re-read every connected server's tool list (ListTools force_refresh)."""
        ...

    def servers(self) -> list[ToolServerInfo]: ...

    def find(self, name: str) -> ToolInfo | None:
        """A tool by its model name ("srv__tool") or resource name (``names.tool``)."""
        ...

    async def call(
        self, tool: ToolInfo, arguments: dict[str, Any], *, user_id: str, timeout: float
    ) -> ToolResult:
        """Run one call; failures come back as ``is_error`` results, never as exceptions."""
        ...
