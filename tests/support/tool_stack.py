"""A chat stack whose server has real MCP servers: the bundled tasks server over stdio."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aichat_backend.tools.base import ServerState
from aichat_backend.tools.pool import MCPPool
from tests.support.chat import ChatStack, chat_stack

# Long enough for a few of the pool's retries on a loaded machine; a server that never
# comes up still fails the test, with the servers' states in the message.
UP_WITHIN = 60.0


async def servers_up(pool: MCPPool, broken: Collection[str] = ()) -> None:
    """Until every server (but those named ``broken``) is connected with its tools listed.

    Not only their first attempts (``wait_ready``): on a loaded machine a first connect can
    miss its timeout (a Python server imports the MCP SDK first, ~1.5 s of CPU), and the
    pool tries again after its backoff; what a test needs is the servers up."""
    assert await pool.wait_ready(UP_WITHIN), pool.servers()
    assert await pool.wait_until(
        lambda: all(
            s.state is ServerState.CONNECTED and s.tool_count > 0
            for s in pool.servers()
            if s.name not in broken
        ),
        UP_WITHIN,
    ), pool.servers()


def tasks_server_entry(db: Path, **extra: Any) -> dict[str, Any]:
    return {
        "description": "Tasks and a calculator (bundled)",
        "command": sys.executable,
        "args": ["-m", "aichat_backend", "mcp-tasks", "--db", str(db)],
        "env": {"PYTHONPATH": ":".join(sys.path)},
        **extra,
    }


@asynccontextmanager
async def tool_stack(
    provider: str,
    database_url: str,
    tmp_path: Path,
    servers: dict[str, Any] | None = None,
    *,
    broken: Collection[str] = (),
    **overrides: Any,
) -> AsyncIterator[ChatStack]:
    servers = servers or {"tasks": tasks_server_entry(tmp_path / "tasks.db")}
    path = tmp_path / "mcp-servers.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    async with chat_stack(provider, database_url, mcp_servers_file=path, **overrides) as stack:
        pool = stack.server.app.pool
        assert pool is not None
        await servers_up(pool, broken)
        yield stack
