"""What an MCP failure means for the pool: a readable reason, and whether the session is gone.

The SDK raises from several layers (its own ``MCPError``, anyio streams, OS and HTTP
errors), often wrapped in exception groups by its task groups: both questions look at
the leaves.
"""

from __future__ import annotations

import anyio
import httpx2
from mcp.client.subscriptions import SubscriptionLost
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, INVALID_REQUEST


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def describe(exc: BaseException) -> str:
    """One line naming the first real failure (for logs and operators, not for users)."""
    leaf = _leaves(exc)[0]
    if isinstance(leaf, MCPError):
        return f"{leaf.message} (code {leaf.code})"
    text = str(leaf)
    return f"{type(leaf).__name__}: {text}" if text else type(leaf).__name__


def is_connection_error(exc: BaseException) -> bool:
    """Whether only a new session can help (as opposed to one call having failed)."""
    for leaf in _leaves(exc):
        if isinstance(leaf, MCPError) and (
            leaf.code == CONNECTION_CLOSED
            # The SDK's answer to an HTTP 404 on a handshake-era session: the server
            # restarted and forgot us, so only a new session helps.
            or (leaf.code == INVALID_REQUEST and leaf.message == "Session terminated")
        ):
            return True
        if isinstance(
            leaf,
            anyio.ClosedResourceError
            | anyio.BrokenResourceError
            | anyio.EndOfStream
            | OSError
            | httpx2.TransportError
            | SubscriptionLost,
        ):
            return True
    return False
