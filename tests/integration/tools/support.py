"""Helpers for the MCP pool tests: server entries, pools with fast backoff, HTTP servers."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from aichat_backend.tools.base import ServerState, ToolInfo, ToolResult
from aichat_backend.tools.config import parse_servers
from aichat_backend.tools.pool import MCPPool
from tests.support.ports import free_port

PROBE = Path(__file__).parent / "servers" / "probe.py"
# Upper bound for any state change the tests wait on (they wait on events): a server's
# process start took over 15 s under the parallel suite on a loaded 2-core machine.
WAIT = 60.0


def probe_entry(*args: str, **extra: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(PROBE), *args], **extra}


def tasks_entry(db: Path, **extra: Any) -> dict[str, Any]:
    return {
        "command": sys.executable,
        "args": ["-m", "aichat_backend", "mcp-tasks", "--db", str(db)],
        **extra,
    }


def make_pool(
    entries: Mapping[str, dict[str, Any]],
    environ: Mapping[str, str] | None = None,
    **options: Any,
) -> MCPPool:
    configs = parse_servers(
        {"mcpServers": dict(entries)}, environ=os.environ if environ is None else environ
    )
    # Fast backoff: a test waits for reconnects on events, and they should come soon.
    return MCPPool(configs, **{"reconnect_initial": 0.05, "reconnect_max": 0.5, **options})


def state(pool: MCPPool, name: str) -> ServerState:
    return next(s.state for s in pool.servers() if s.name == name)


def tool(pool: MCPPool, name: str) -> ToolInfo:
    found = pool.find(name)
    assert found is not None, f"{name} not in {[t.model_name for t in pool.tools()]}"
    return found


async def call(
    pool: MCPPool, name: str, user: str = "tester", timeout: float = 10.0, **arguments: Any
) -> ToolResult:
    return await pool.call(tool(pool, name), arguments, user_id=user, timeout=timeout)


async def wait(pool: MCPPool, predicate: Callable[[], bool]) -> None:
    assert await pool.wait_until(predicate, WAIT), [s for s in pool.servers()]


class _ReadyServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class ThreadedHTTPServer:
    """A real HTTP server on 127.0.0.1 in a thread with its own event loop.

    ``stop()`` then ``start()`` again serves a fresh app on the same port: a server that
    went away and came back. Both block, so call them through ``asyncio.to_thread``.
    """

    def __init__(self, app_factory: Callable[[], ASGIApp]) -> None:
        self._app_factory = app_factory
        # Outside the ephemeral range: no connection can take it while the server is down.
        self.port = free_port()
        self._server: _ReadyServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app_factory(), log_level="warning", lifespan="on", timeout_graceful_shutdown=0.2
        )
        server = _ReadyServer(config)
        self._server = server

        def serve() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            finally:
                sock.close()

        self._thread = threading.Thread(target=serve, name=f"http-{self.port}", daemon=True)
        self._thread.start()
        if not server.ready.wait(WAIT):
            raise RuntimeError("the test HTTP server did not start")

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(WAIT)
        self._server = None
