"""Background watchers on a live MCP session: tool-list changes, and whether it still lives.

2026-07-28 servers announce changes (and their own going away) on a ``subscriptions/listen``
stream. Handshake-era HTTP and SSE sessions have no such stream and die silently (the SDK
re-opens its GET stream), so they are pinged. Each watcher reports through callbacks and
never touches the connection that started it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost, ToolsListChanged
from mcp.shared.exceptions import MCPError

from aichat_backend.tools.mcp_errors import describe, is_connection_error

logger = logging.getLogger(__name__)


async def listen_for_changes(
    client: Client,
    *,
    server: str,
    on_changed: Callable[[], None],
    on_lost: Callable[[str], None],
) -> None:
    """Until the stream ends: ``on_changed`` per list change, ``on_lost`` if it dropped."""
    try:
        async with client.listen(tools_list_changed=True) as subscription:
            async for event in subscription:
                if isinstance(event, ToolsListChanged):
                    on_changed()
    except SubscriptionLost:
        on_lost("the server's event stream dropped")
    except ListenNotSupportedError:
        pass
    except Exception as exc:
        if is_connection_error(exc):
            on_lost(describe(exc))
        else:  # the session still works; we just will not hear of list changes
            logger.warning("MCP server %r: cannot listen for changes: %s", server, describe(exc))


async def keep_alive(
    client: Client,
    *,
    interval: float,
    timeout: float,
    check_now: asyncio.Event,
    on_lost: Callable[[str], None],
) -> None:
    """Ping every ``interval``, and at once when ``check_now`` is set (a call failed oddly).

    An error answer means the session is gone (a restarted server forgot it: servers word
    that differently, so no message is matched); a slow answer does not, since a busy
    server may answer pings only between tool calls.
    """
    while True:
        with anyio.move_on_after(interval):
            await check_now.wait()
        check_now.clear()
        try:
            with anyio.move_on_after(timeout):
                await client.session.send_request(
                    types.PingRequest(),
                    types.EmptyResult,
                    request_read_timeout_seconds=timeout * 2,
                )
        except Exception as exc:
            if isinstance(exc, MCPError) or is_connection_error(exc):
                on_lost(f"keepalive failed: {describe(exc)}")
                return
