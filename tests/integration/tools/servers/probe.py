"""A small MCP server for the pool's tests: reports what it sees, misbehaves on demand.

Run as a stdio server (``python probe.py [--name N] [--gate FIFO] [--fail-unless FILE]``)
or import ``build`` to serve it over HTTP in the test process. ``--gate FIFO`` holds the
start-up until the test writes to that named pipe: a server exactly as slow as the test
wants, with no timing guesses and no polling. ``--fail-unless FILE`` exits at once while
FILE is missing (a server that is down until the test says otherwise); it is checked
before the MCP SDK is imported, so a failed start is cheap.
"""

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

USER_ID_META_KEY = "io.aichat/user_id"  # what the backend sends; kept literal on purpose
LONG_TOOL_NAME = "a_tool_name_that_is_much_longer_than_any_provider_accepts_" + "x" * 40
DOTTED_TOOL_NAME = "dotted.tool-name"


def build(name: str = "probe") -> "MCPServer":
    import anyio
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp_types import ToolAnnotations
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    server: MCPServer = MCPServer(name, log_level="WARNING")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def whoami(ctx: Context) -> str:
        """The user id the call carried in _meta."""
        meta = ctx.request_context.meta or {}
        return str(meta.get(USER_ID_META_KEY, "<none>"))  # type: ignore[union-attr]

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def environment() -> str:
        """This process's environment, as JSON."""
        return json.dumps(dict(os.environ))

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def pid() -> int:
        return os.getpid()

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    async def sleep(seconds: float) -> str:
        await anyio.sleep(seconds)
        return "slept"

    @server.tool()
    def fail(message: str) -> str:
        """Always an isError result."""
        raise ToolError(message)

    @server.tool(annotations=ToolAnnotations(destructive_hint=True))
    def crash() -> str:
        """The process dies mid-call."""
        os._exit(3)

    @server.tool()
    async def add_tool(tool: str, ctx: Context, notify: bool = True) -> str:
        """Add a tool named ``tool``; announce it unless ``notify`` is false."""

        def dynamic() -> str:
            return f"I am {tool}"

        server.add_tool(dynamic, name=tool, annotations=ToolAnnotations(read_only_hint=True))
        if notify:
            if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
                await ctx.notify_tools_changed()  # subscriptions/listen (2026-07-28)
            else:
                await ctx.session.send_tool_list_changed()  # the handshake-era notification
        return "added"

    @server.tool(name=DOTTED_TOOL_NAME, annotations=ToolAnnotations(read_only_hint=True))
    def dotted() -> str:
        return "dotted"

    @server.tool(name=LONG_TOOL_NAME, annotations=ToolAnnotations(read_only_hint=True))
    def long_named() -> str:
        return "long"

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="probe")
    parser.add_argument("--gate", type=Path)
    parser.add_argument("--fail-unless", type=Path)
    args = parser.parse_args()
    if args.fail_unless is not None and not args.fail_unless.exists():
        raise SystemExit(f"probe: {args.fail_unless} is missing")
    if args.gate is not None:
        args.gate.read_bytes()  # blocks until the test opens the pipe, writes and closes it
    build(args.name).run("stdio")


if __name__ == "__main__":
    main()
