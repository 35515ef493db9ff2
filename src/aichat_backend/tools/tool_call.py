"""One ``tools/call`` on a live session, every failure turned into a ``ToolResult``.

The model must be able to read what went wrong, and the turn must go on: an ``is_error``
answer, a timeout, a protocol error or a server that vanished mid-call all come back as
``ToolResult(is_error=True)``. Only the caller's cancellation propagates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import anyio
import mcp_types as types
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import REQUEST_TIMEOUT

from aichat_backend.tools.base import USER_ID_META_KEY, ToolResult
from aichat_backend.tools.conversion import result_content
from aichat_backend.tools.mcp_errors import describe, is_connection_error

# A call gets the SDK's own request timeout; this outer bound only catches a call stuck
# before its request was even written (a child that stopped reading its stdin).
TIMEOUT_GRACE = 1.0


class Clock:
    """Measures one call from its start, for the result's ``duration_ms``."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def result(
        self,
        text: str,
        is_error: bool,
        structured: dict[str, Any] | None = None,
        *,
        timed_out: bool = False,
    ) -> ToolResult:
        elapsed_ms = int(self.elapsed() * 1000)
        return ToolResult(text, is_error, elapsed_ms, structured, timed_out=timed_out)


async def call_on_session(
    client: Client,
    *,
    server: str,
    tool: str,
    arguments: dict[str, Any],
    user_id: str,
    timeout: float,
    clock: Clock,
    on_lost: Callable[[str], None],
    on_suspect: Callable[[], None],
    is_current: Callable[[], bool],
) -> ToolResult:
    """Call ``tool`` with the caller's id in ``_meta``.

    ``on_lost`` is told when the session is gone (so it reconnects), ``on_suspect`` when
    an error answer leaves it unclear whether the session itself still works;
    ``is_current`` says whether ``client`` is still the server's session.
    """
    too_late = f"tool {tool!r} on server {server!r} did not answer within {timeout:g} s"
    went_away = f"tool server {server!r} went away during the call; reconnecting"
    try:
        with anyio.move_on_after(timeout + TIMEOUT_GRACE) as deadline:
            answer = await client.call_tool(
                tool,
                arguments,
                read_timeout_seconds=timeout,
                meta=cast(types.RequestParamsMeta, {USER_ID_META_KEY: user_id}),
            )
        if deadline.cancelled_caught:
            return clock.result(too_late, True, timed_out=True)
    except MCPError as exc:
        if is_connection_error(exc):
            on_lost(describe(exc))
            return clock.result(went_away, True)
        # The SDK's own timeout comes after `timeout`; an early -32001 is the server's.
        if exc.code == REQUEST_TIMEOUT and clock.elapsed() >= timeout * 0.9:
            return clock.result(too_late, True, timed_out=True)
        on_suspect()  # is the session itself still good? (handshake-era HTTP)
        return clock.result(
            f"tool server {server!r} rejected the call to {tool!r}: "
            f"{exc.message} (code {exc.code})",
            True,
        )
    except Exception as exc:
        if is_connection_error(exc) or not is_current():
            on_lost(describe(exc))
            return clock.result(went_away, True)
        return clock.result(f"calling {tool!r} on server {server!r} failed: {describe(exc)}", True)
    text, structured = result_content(answer)
    if answer.is_error and not text:
        text = f"tool {tool!r} reported an error without a message"
    return clock.result(text, answer.is_error, structured)
