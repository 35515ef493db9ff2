"""The servers file: both shapes, per-server options, clear errors, clean child environments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aichat_backend.tools.base import ApprovalPolicy
from aichat_backend.tools.config import load_servers_file, parse_servers

pytestmark = pytest.mark.timeout(10)

BACKEND_ENV = {
    "PATH": "/usr/local/bin:/usr/bin",
    "HOME": "/home/aichat",
    "AICHAT_API_KEY": "sk-backend-secret",
    "AICHAT_DATABASE_URL": "postgresql://aichat:pw@db/aichat",
    "GITHUB_TOKEN": "ghp-for-the-github-server",
}


def test_seed_001_shape() -> None:
    [server] = parse_servers(
        {
            "servers": [
                {
                    "name": "filesystem",
                    "description": "File system operations",
                    "command": "npx",
                    "args": ["@modelcontextprotocol/server-filesystem", "/srv"],
                    "enabled": True,
                }
            ]
        },
        environ=BACKEND_ENV,
    )
    assert server.name == "filesystem"
    assert server.description == "File system operations"
    assert server.transport == "stdio"
    assert server.command == "npx"
    assert server.args == ("@modelcontextprotocol/server-filesystem", "/srv")
    assert server.enabled
    assert server.approval is ApprovalPolicy.AUTO
    assert server.tools is None


def test_mcp_servers_shape_infers_transports() -> None:
    servers = parse_servers(
        {
            "mcpServers": {
                "local": {"command": "uvx", "args": ["mcp-server-time"]},
                "remote": {"url": "https://mcp.example.com/mcp", "headers": {"X-Team": "a"}},
                "old": {"url": "https://old.example.com/sse", "transport": "sse"},
                "typed": {"url": "https://typed.example.com/mcp", "type": "http"},
            }
        },
        environ=BACKEND_ENV,
    )
    by_name = {s.name: s for s in servers}
    assert by_name["local"].transport == "stdio"
    assert by_name["remote"].transport == "streamable_http"
    assert by_name["remote"].headers == {"X-Team": "a"}
    assert by_name["old"].transport == "sse"
    assert by_name["typed"].transport == "streamable_http"


def test_per_server_options() -> None:
    [server] = parse_servers(
        {
            "mcpServers": {
                "tasks": {
                    "command": "aichat-backend",
                    "args": ["mcp-tasks"],
                    "timeout": 3,
                    "call_timeout": 20,
                    "tools": ["list_tasks", "delete_task"],
                    "approval": "never",
                    "tool_approval": {"delete_task": "always"},
                    "protocol": "legacy",
                    "enabled": False,
                }
            }
        },
        environ=BACKEND_ENV,
    )
    assert server.timeout == 3.0
    assert server.call_timeout == 20.0
    assert server.allows("list_tasks")
    assert not server.allows("add_task")
    assert server.approval_for("list_tasks") is ApprovalPolicy.NEVER
    assert server.approval_for("delete_task") is ApprovalPolicy.ALWAYS
    assert server.protocol == "legacy"
    assert not server.enabled


def test_disabled_alias() -> None:
    [server] = parse_servers(
        {"mcpServers": {"x": {"command": "x", "disabled": True}}}, environ=BACKEND_ENV
    )
    assert not server.enabled


def test_stdio_spawn_env_is_clean() -> None:
    [server] = parse_servers(
        {
            "mcpServers": {
                "github": {
                    "command": "github-mcp",
                    "env": {"GITHUB_TOKEN": "${GITHUB_TOKEN}", "MODE": "read-only"},
                }
            }
        },
        environ=BACKEND_ENV,
    )
    assert server.spawn_env() == {
        "PATH": BACKEND_ENV["PATH"],
        "HOME": BACKEND_ENV["HOME"],
        "GITHUB_TOKEN": "ghp-for-the-github-server",
        "MODE": "read-only",
    }


def test_header_variables_expand() -> None:
    [server] = parse_servers(
        {
            "mcpServers": {
                "gh": {
                    "url": "https://api.example.com/mcp",
                    "headers": {"Authorization": "Bearer ${env:GITHUB_TOKEN}"},
                }
            }
        },
        environ=BACKEND_ENV,
    )
    assert server.headers == {"Authorization": "Bearer ghp-for-the-github-server"}
    assert server.spawn_env() == {}  # nothing is spawned for an HTTP server


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"mcpServers": {"a": {}}}, "'a': needs a \"command\""),
        ({"mcpServers": {"a": {"command": "x", "url": "http://h/mcp"}}}, "'a': give either"),
        ({"mcpServers": {"a": {"command": "x", "tool_aproval": {}}}}, "'a': unknown keys"),
        ({"mcpServers": {"a": {"command": "x", "approval": "sometimes"}}}, "'a': \"approval\""),
        (
            {"mcpServers": {"a": {"command": "x", "tool_approval": {"t": "maybe"}}}},
            "'a': \"tool_approval\" of 't'",
        ),
        ({"mcpServers": {"a": {"command": "x", "timeout": -1}}}, "'a': \"timeout\""),
        ({"mcpServers": {"a": {"command": "x", "timeout": "10"}}}, "'a': \"timeout\""),
        ({"mcpServers": {"a": {"command": "x", "args": "--flag"}}}, "'a': \"args\""),
        ({"mcpServers": {"a": {"command": "x", "env": {"N": 1}}}}, "'a': \"env\""),
        ({"mcpServers": {"a": {"command": "x", "env": {"K": "${NOPE}"}}}}, "'a': env['K']"),
        ({"mcpServers": {"a": {"url": "ftp://h/x"}}}, "'a': the url"),
        ({"mcpServers": {"a": {"url": "http://h/mcp", "env": {}}}}, "'a': \"env\" applies"),
        (
            {"mcpServers": {"a": {"command": "x", "transport": "websocket"}}},
            "'a': unknown transport",
        ),
        ({"mcpServers": {"a b": {"command": "x"}}}, "'a b': the name"),
        ({"mcpServers": {"a/b": {"command": "x"}}}, "'a/b': the name"),
        ({"servers": [{"command": "x"}]}, "servers[0] needs"),
        (
            {"servers": [{"name": "a", "command": "x"}], "mcpServers": {"a": {"command": "y"}}},
            "'a': defined twice",
        ),
        ({"mcpServers": []}, '"mcpServers" must be an object'),
        ({"tools": {}}, "unknown top-level keys"),
        ([], "top level must be a JSON object"),
    ],
)
def test_malformed_entries_name_the_entry(document: object, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_servers(document, environ=BACKEND_ENV)
    assert problem in str(caught.value)


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"t": {"command": "x"}}}))
    [server] = load_servers_file(path, environ=BACKEND_ENV)
    assert server.name == "t"


def test_load_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read it"):
        load_servers_file(tmp_path / "missing.json", environ=BACKEND_ENV)
    broken = tmp_path / "broken.json"
    broken.write_text('{"mcpServers": {')
    with pytest.raises(ValueError, match="not valid JSON"):
        load_servers_file(broken, environ=BACKEND_ENV)


async def test_pool_from_file(tmp_path: Path) -> None:
    from aichat_backend.tools.base import ServerState
    from aichat_backend.tools.pool import MCPPool

    empty = MCPPool.from_file(None)
    async with empty:
        assert await empty.wait_ready(0.1)
        assert empty.servers() == [] and empty.tools() == []

    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"servers": [{"name": "off", "command": "x", "enabled": False}]}))
    pool = MCPPool.from_file(path, environ=BACKEND_ENV)
    async with pool:
        assert await pool.wait_ready(0.1)  # nothing enabled: ready at once
        [info] = pool.servers()
        assert info.state is ServerState.DISABLED

    path.write_text(json.dumps({"mcpServers": {"bad": {"command": 3}}}))
    with pytest.raises(ValueError, match="'bad'"):
        MCPPool.from_file(path, environ=BACKEND_ENV)
