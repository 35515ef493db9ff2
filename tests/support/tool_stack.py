"""A chat stack whose server has real MCP servers: the bundled tasks server over stdio."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.support.chat import ChatStack, chat_stack


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
    **overrides: Any,
) -> AsyncIterator[ChatStack]:
    servers = servers or {"tasks": tasks_server_entry(tmp_path / "tasks.db")}
    path = tmp_path / "mcp-servers.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    async with chat_stack(provider, database_url, mcp_servers_file=path, **overrides) as stack:
        pool = stack.server.app.pool
        assert pool is not None
        assert await pool.wait_ready(20), pool.servers()
        yield stack
