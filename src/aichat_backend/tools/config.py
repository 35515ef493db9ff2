"""The MCP servers file (``AICHAT_MCP_SERVERS_FILE``): which tool servers to run, and how.

Two shapes are accepted, so existing files keep working:

- seed 001's ``{"servers": [{"name", "description", "command", "args", "env", "enabled"}]}``
- the common ``{"mcpServers": {"<name>": {"command", "args", "env"} | {"url", "headers"}}}``

Per server, on top of those: ``transport`` ("stdio" | "streamable_http" | "sse"; inferred
from ``command``/``url`` when absent, ``type`` is an alias), ``timeout`` (seconds to
connect and list tools), ``call_timeout`` (caps the engine's per-call timeout),
``enabled`` (or ``disabled``), ``tools`` (allow-list), ``approval`` ("auto" | "always" |
"never"), ``tool_approval`` (per-tool overrides), ``protocol`` ("auto" | "legacy"), ``cwd``.

``${VAR}`` (or ``${env:VAR}``) inside ``env`` and ``headers`` values is replaced by the
backend's variable of that name: the file can name a secret a server needs without
holding it. That is the only way a backend variable reaches a stdio server: a child starts
from a clean environment (``PATH`` and ``HOME`` plus its entry's ``env``), never the
backend's own (API keys, database URL).

Unknown keys are errors: a misspelt ``tool_approval`` must not silently fall back.
Every problem is a ``ValueError`` naming the entry; start-up turns it into exit code 2.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aichat_backend.tools.base import ApprovalPolicy
from aichat_backend.tools.config_values import (
    expand_map,
    optional_str,
    policy,
    seconds,
    str_map,
)

Transport = Literal["stdio", "streamable_http", "sse"]
Protocol = Literal["auto", "legacy"]

DEFAULT_CONNECT_TIMEOUT = 10.0
# What a stdio child inherits from the backend. PATH so the command resolves; HOME because
# the usual launchers (npx, uvx, pip) keep their caches under it and fail without one.
# (The SDK's stdio transport also copies LOGNAME, SHELL, TERM and USER: no secrets there.)
INHERITED_VARIABLES = ("PATH", "HOME")

SERVER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TRANSPORT_ALIASES: dict[str, Transport] = {
    "stdio": "stdio",
    "streamable_http": "streamable_http",
    "streamable-http": "streamable_http",
    "http": "streamable_http",
    "sse": "sse",
}
_KEYS = frozenset(
    {
        "name",
        "description",
        "command",
        "args",
        "env",
        "cwd",
        "url",
        "headers",
        "transport",
        "type",
        "enabled",
        "disabled",
        "timeout",
        "call_timeout",
        "tools",
        "approval",
        "tool_approval",
        "protocol",
    }
)


@dataclass(frozen=True, slots=True)
class RunAs:
    """The user a stdio server runs as, when not the backend's own (see ``run_as``)."""

    uid: int
    gid: int
    home: str


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """One tool server, validated. ``spawn_env()`` is everything a stdio child gets."""

    name: str
    transport: Transport
    description: str = ""
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # the entry's own, expanded
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    enabled: bool = True
    timeout: float | None = None  # None: the pool's default
    call_timeout: float | None = None
    tools: frozenset[str] | None = None  # None: every tool the server lists
    approval: ApprovalPolicy = ApprovalPolicy.AUTO
    tool_approval: Mapping[str, ApprovalPolicy] = field(default_factory=dict)
    protocol: Protocol = "auto"
    inherited_env: Mapping[str, str] = field(default_factory=dict)  # PATH, HOME
    run_as: RunAs | None = None  # None: the backend's own user

    def spawn_env(self) -> dict[str, str]:
        return {**self.inherited_env, **self.env}

    def allows(self, tool: str) -> bool:
        return self.tools is None or tool in self.tools

    def approval_for(self, tool: str) -> ApprovalPolicy:
        return self.tool_approval.get(tool, self.approval)


def load_servers_file(
    path: str | Path, *, environ: Mapping[str, str] | None = None
) -> list[ServerConfig]:
    """Read and validate the servers file; ``environ`` defaults to the process environment."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(
            f"MCP servers file {str(path)!r}: cannot read it: {exc.strerror}"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"MCP servers file {str(path)!r}: not valid JSON: {exc.msg} "
            f"(line {exc.lineno}, column {exc.colno})"
        ) from None
    return parse_servers(data, environ=os.environ if environ is None else environ)


def parse_servers(data: Any, *, environ: Mapping[str, str]) -> list[ServerConfig]:
    """Validate an already-decoded servers document (either shape, or both at once)."""
    if not isinstance(data, dict):
        raise ValueError("MCP servers file: the top level must be a JSON object")
    unknown = set(data) - {"servers", "mcpServers", "$schema", "$comment"}
    if unknown:
        raise ValueError(f"MCP servers file: unknown top-level keys {sorted(unknown)}")
    entries: list[tuple[str, Any]] = []
    servers = data.get("servers", [])
    if not isinstance(servers, list):
        raise ValueError('MCP servers file: "servers" must be a list')
    for index, entry in enumerate(servers):
        if not isinstance(entry, dict):
            raise ValueError(f"MCP servers file: servers[{index}] must be an object")
        name = entry.get("name")
        if not isinstance(name, str):
            raise ValueError(f'MCP servers file: servers[{index}] needs a string "name"')
        entries.append((name, entry))
    mcp_servers = data.get("mcpServers", {})
    if not isinstance(mcp_servers, dict):
        raise ValueError('MCP servers file: "mcpServers" must be an object')
    for name, entry in mcp_servers.items():
        if not isinstance(entry, dict):
            raise ValueError(f"MCP servers file: mcpServers[{name!r}] must be an object")
        if "name" in entry and entry["name"] != name:
            raise ValueError(f'MCP server {name!r}: its "name" differs from its key')
        entries.append((name, entry))

    inherited = {k: environ[k] for k in INHERITED_VARIABLES if k in environ}
    result: list[ServerConfig] = []
    seen: set[str] = set()
    for name, entry in entries:
        if name in seen:
            raise ValueError(f"MCP server {name!r}: defined twice")
        seen.add(name)
        result.append(_parse_entry(name, entry, environ, inherited))
    return result


def _parse_entry(
    name: str, entry: dict[str, Any], environ: Mapping[str, str], inherited: dict[str, str]
) -> ServerConfig:
    def fail(problem: str) -> ValueError:
        return ValueError(f"MCP server {name!r}: {problem}")

    if not SERVER_NAME_PATTERN.match(name):
        raise fail("the name must be 1-64 letters, digits, '.', '_' or '-' (no spaces or '/')")
    unknown = set(entry) - _KEYS
    if unknown:
        raise fail(f"unknown keys {sorted(unknown)}")

    command = optional_str(entry, "command", fail)
    url = optional_str(entry, "url", fail)
    if command and url:
        raise fail('give either "command" (stdio) or "url" (HTTP), not both')
    if not command and not url:
        raise fail('needs a "command" (stdio) or a "url" (Streamable HTTP or SSE)')
    if "transport" in entry and "type" in entry and entry["transport"] != entry["type"]:
        raise fail('"transport" and "type" disagree')
    declared = entry.get("transport", entry.get("type"))
    transport: Transport
    if declared is None:
        transport = "stdio" if command else "streamable_http"
    elif isinstance(declared, str) and declared.lower() in _TRANSPORT_ALIASES:
        transport = _TRANSPORT_ALIASES[declared.lower()]
    else:
        raise fail(f"unknown transport {declared!r} (stdio, streamable_http or sse)")
    if transport == "stdio" and not command:
        raise fail('the stdio transport needs a "command"')
    if transport != "stdio":
        if not url:
            raise fail(f'the {transport} transport needs a "url"')
        if not re.match(r"^https?://", url):
            raise fail(f"the url must start with http:// or https:// (got {url!r})")
        for key in ("args", "env", "cwd"):
            if key in entry:
                raise fail(f'"{key}" applies to stdio servers only')
    elif "headers" in entry:
        raise fail('"headers" applies to HTTP servers only')

    args = entry.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise fail('"args" must be a list of strings')
    env = expand_map(str_map(entry, "env", fail), environ, fail, "env")
    headers = expand_map(str_map(entry, "headers", fail), environ, fail, "headers")

    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise fail('"enabled" must be true or false')
    disabled = entry.get("disabled", False)
    if not isinstance(disabled, bool):
        raise fail('"disabled" must be true or false')

    tools = entry.get("tools")
    if tools is not None and (
        not isinstance(tools, list) or not all(isinstance(t, str) and t for t in tools)
    ):
        raise fail('"tools" must be a list of tool names')

    protocol = entry.get("protocol", "auto")
    if protocol not in ("auto", "legacy"):
        raise fail('"protocol" must be "auto" or "legacy"')

    overrides = entry.get("tool_approval", {})
    if not isinstance(overrides, dict):
        raise fail('"tool_approval" must be an object of tool name to policy')

    return ServerConfig(
        name=name,
        transport=transport,
        description=optional_str(entry, "description", fail) or "",
        command=command,
        args=tuple(args),
        env=env,
        cwd=optional_str(entry, "cwd", fail),
        url=url,
        headers=headers,
        enabled=enabled and not disabled,
        timeout=seconds(entry, "timeout", fail),
        call_timeout=seconds(entry, "call_timeout", fail),
        tools=frozenset(tools) if tools is not None else None,
        approval=policy(entry.get("approval", "auto"), fail, '"approval"'),
        tool_approval={
            str(tool): policy(value, fail, f'"tool_approval" of {tool!r}')
            for tool, value in overrides.items()
        },
        protocol=protocol,
        inherited_env=dict(inherited) if transport == "stdio" else {},
    )
