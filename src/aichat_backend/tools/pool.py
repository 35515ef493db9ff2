"""The MCP client pool: one long-lived connection per configured tool server.

The facade the engine and ToolService use (``aichat_backend.tools.base.ToolProvider``):
lifecycle, the tool catalogue across servers, lookup by name, and calls. Each server's
connection lives in ``connection`` (state, backoff, watchers), its wire in ``transport``,
and MCP-to-domain conversion in ``conversion``. One slow or broken server never holds up
the others or start-up.

``call`` never raises for a tool's failure: an ``is_error`` result, a timeout, a protocol
error or a vanished server all come back as ``ToolResult(is_error=True)`` with a message
the model can read. Only cancellation of the caller propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from aichat_backend import names
from aichat_backend.tools.backoff import Backoff
from aichat_backend.tools.base import ServerState, ToolInfo, ToolResult, ToolServerInfo
from aichat_backend.tools.config import DEFAULT_CONNECT_TIMEOUT, ServerConfig, load_servers_file
from aichat_backend.tools.connection import ServerConnection
from aichat_backend.tools.conversion import tool_info
from aichat_backend.tools.naming import model_names

__all__ = ["MCPPool", "tool_info"]


class MCPPool:
    """The ``ToolProvider`` over real MCP servers (see ``aichat_backend.tools.base``).

    Use: ``pool = MCPPool.from_file(settings.mcp_servers_file); await pool.start(); ...;
    await pool.aclose()``, all on the serving event loop. ``start`` returns at once;
    ``wait_ready`` waits for every enabled server's first attempt (tests, or a bounded
    wait at start-up). Calls from many tasks at once share each server's one session.
    """

    def __init__(
        self,
        configs: Sequence[ServerConfig],
        *,
        connect_timeout_default: float = DEFAULT_CONNECT_TIMEOUT,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
        reconnect_multiplier: float = 2.0,
        keepalive_interval: float = 30.0,
        errlog: TextIO | None = None,
    ) -> None:
        names = [c.name for c in configs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"MCP servers defined twice: {duplicates}")
        backoff = Backoff(reconnect_initial, reconnect_max, reconnect_multiplier)
        self._servers: dict[str, ServerConnection] = {
            c.name: ServerConnection(
                c,
                on_change=self._on_server_change,
                connect_timeout=c.timeout or connect_timeout_default,
                backoff=backoff,
                keepalive_interval=keepalive_interval,
                errlog=errlog,
            )
            for c in configs
        }
        self._catalogue: list[ToolInfo] = []
        self._by_model: dict[str, ToolInfo] = {}
        self._by_resource: dict[str, ToolInfo] = {}
        self._changed = asyncio.Event()
        self._started = False
        self._closed = False

    @classmethod
    def from_file(
        cls,
        path: str | Path | None,
        *,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> MCPPool:
        """The pool for ``AICHAT_MCP_SERVERS_FILE`` (none: an empty pool).

        Raises ``ValueError`` naming the bad entry; start-up maps it to exit code 2.
        """
        configs = [] if path is None else load_servers_file(path, environ=environ)
        return cls(configs, **options)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting to every enabled server in the background; returns at once."""
        if self._started:
            return
        self._started = True
        for server in self._servers.values():
            server.start()

    async def aclose(self) -> None:
        """Close every session and stop every stdio child (bounded; safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(*(s.stop() for s in self._servers.values()))
        self._rebuild_catalogue()

    async def __aenter__(self) -> MCPPool:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def wait_ready(self, timeout: float) -> bool:
        """Until every enabled server has had its first attempt (connected or failed).

        Returns False if ``timeout`` passed first; never raises for a slow server.
        """
        return await self.wait_until(
            lambda: all(s.status.attempted for s in self._servers.values() if s.config.enabled),
            timeout,
        )

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Until ``predicate()`` holds, re-checked on every server state or catalogue change."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._changed  # taken before the check, so no change is missed
                    if predicate():
                        return True
                    await changed.wait()
        except TimeoutError:
            return predicate()

    # --- ToolProvider ----------------------------------------------------------------

    def tools(self) -> list[ToolInfo]:
        return list(self._catalogue)

    async def refresh(self) -> list[ToolInfo]:
        await asyncio.gather(*(s.refresh() for s in self._servers.values()))
        return self.tools()

    def servers(self) -> list[ToolServerInfo]:
        return [s.status.info() for s in self._servers.values()]

    def connect_count(self, server: str) -> int:
        """How many times ``server`` has connected (1 after start, +1 per reconnect)."""
        return self._servers[server].status.connects

    def find(self, name: str) -> ToolInfo | None:
        if names.is_tool_name(name):
            return self._by_resource.get(name)
        return self._by_model.get(name)

    async def call(
        self, tool: ToolInfo, arguments: dict[str, Any], *, user_id: str, timeout: float
    ) -> ToolResult:
        server = self._servers.get(tool.server)
        if server is None:
            return ToolResult(f"unknown tool server {tool.server!r}", True, 0)
        return await server.call(tool.tool, arguments, user_id=user_id, timeout=timeout)

    # --- catalogue -------------------------------------------------------------------

    def _on_server_change(self, tools_changed: bool) -> None:
        if tools_changed:
            self._rebuild_catalogue()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _rebuild_catalogue(self) -> None:
        listed = [
            (server, tool)
            for server in self._servers.values()
            if server.status.state is ServerState.CONNECTED
            for tool in server.status.tools
        ]
        offered = model_names((server.config.name, tool.name) for server, tool in listed)
        catalogue = [
            tool_info(server.config, tool, offered[(server.config.name, tool.name)])
            for server, tool in listed
        ]
        self._catalogue = catalogue
        self._by_model = {t.model_name: t for t in catalogue}
        self._by_resource = {t.resource_name: t for t in catalogue}
