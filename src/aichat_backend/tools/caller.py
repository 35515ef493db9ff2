"""Who a bundled MCP server is acting for: the user id the backend puts in every call.

The backend (never the model) sets ``_meta["io.aichat/user_id"]`` on each ``tools/call``;
a call without it is refused, so a server can never fall back to "everyone's" data.
"""

from __future__ import annotations

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from aichat_backend.tools.base import USER_ID_META_KEY

MAX_USER_ID = 256


def caller_id(ctx: Context) -> str:
    meta = ctx.request_context.meta or {}
    user = meta.get(USER_ID_META_KEY)  # type: ignore[union-attr]
    if not isinstance(user, str) or not user.strip():
        raise ToolError(f"no user id: the caller must send _meta[{USER_ID_META_KEY!r}]")
    if len(user) > MAX_USER_ID:
        raise ToolError("the user id is too long")
    return user
