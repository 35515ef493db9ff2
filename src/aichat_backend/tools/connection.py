"""One tool server's connection: its state, its cached tool list, the task that owns it.

The task owns the connection from end to end: it enters the SDK's transport and session
context managers, keeps them open while calls are made on the shared session from any
task, and exits them itself (anyio requires a task group or cancel scope to be left by the
task that entered it). When a connection fails or dies the task marks the server FAILED
with the reason and tries again with exponential backoff.

A dead connection is noticed by whichever comes first: the stdio pipe reaching EOF (the
child exited), the server's event stream dropping (2026-07-28 servers), a keepalive ping
failing (handshake-era HTTP and SSE sessions), the transport crashing (an HTTP server
that went away), or a call failing with "connection closed" or "session terminated".
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any, TextIO

import anyio
import anyio.abc
import anyio.lowlevel
import mcp_types as types
from mcp import Client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from aichat_backend.tools.backoff import Backoff
from aichat_backend.tools.base import ToolResult
from aichat_backend.tools.config import ServerConfig
from aichat_backend.tools.mcp_errors import describe, is_connection_error
from aichat_backend.tools.server_status import (
    CANNOT_CONNECT,
    CONNECTION_LOST,
    NO_ANSWER,
    ServerStatus,
)
from aichat_backend.tools.session_watch import keep_alive, listen_for_changes
from aichat_backend.tools.tool_call import Clock, call_on_session
from aichat_backend.tools.transport import open_transport, watch_eof

logger = logging.getLogger(__name__)

CLIENT_INFO = types.Implementation(name="aichat-backend", version="0.1.0")
MAX_LIST_PAGES = 100


class ServerConnection:
    """Use: ``start()`` once, ``call``/``refresh``/``info`` from any task, ``stop()`` once.

    ``on_change(tools_changed)`` is called on every state change, with True when the
    catalogue must be rebuilt (tools appeared, changed or went away).
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        on_change: Callable[[bool], None],
        connect_timeout: float,
        backoff: Backoff,
        keepalive_interval: float,
        errlog: TextIO | None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.status = ServerStatus(config)
        self._client: Client | None = None
        self._was_connected = False
        self._on_change = on_change
        self._connect_timeout = connect_timeout
        self._backoff = backoff
        self._keepalive_interval = keepalive_interval
        self._errlog = errlog
        self._task: asyncio.Task[None] | None = None
        self._scope: anyio.CancelScope | None = None
        self._lost: asyncio.Event | None = None
        self._lost_reason = ""
        self._refresh_wanted = asyncio.Event()
        self._check_now = asyncio.Event()
        self._refresh_lock = asyncio.Lock()

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        if not self.config.enabled or self._task is not None:
            return
        self._scope = anyio.CancelScope()
        self._task = asyncio.create_task(self._run(self._scope), name=f"mcp-server:{self.name}")

    async def stop(self) -> None:
        task, scope = self._task, self._scope
        if task is None or scope is None:
            return
        scope.cancel()  # the owning task leaves its contexts; stdio children are reaped
        done, _ = await asyncio.wait({task}, timeout=15)
        if not done:  # a shutdown wedged past every SDK bound: stop waiting for it
            logger.error("MCP server %r did not shut down in time", self.name)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._client = None
        self.status.closed()

    async def _run(self, scope: anyio.CancelScope) -> None:
        attempt = 0
        logged = ""
        with scope:
            while True:
                self._on_change(self.status.connecting())
                self._was_connected = False
                timed_out = False
                try:
                    reason = await self._connect_and_serve()
                except Exception as exc:  # any failure of this server is its state, not ours
                    reason, timed_out = describe(exc), isinstance(exc, TimeoutError)
                if self._was_connected:
                    attempt, logged = 0, ""
                delay = self._backoff.delay(attempt)
                attempt += 1
                generic = CONNECTION_LOST if self._was_connected else CANNOT_CONNECT
                self._on_change(self.status.failed(reason, NO_ANSWER if timed_out else generic))
                # Once per distinct problem: a server down for hours does not flood the log.
                log = logger.warning if reason != logged else logger.debug
                log(
                    "MCP server %r %s (%s); retrying in %.1f s",
                    self.name,
                    "lost its connection" if self._was_connected else "failed to connect",
                    self.status.last_error,
                    delay,
                )
                logged = reason
                await anyio.sleep(delay)

    async def _connect_and_serve(self) -> str:
        """Connect, list tools, then hold the session until it is lost; returns why."""
        lost = asyncio.Event()
        self._lost, self._lost_reason = lost, ""
        timeout = self._connect_timeout
        with anyio.CancelScope(deadline=anyio.current_time() + timeout) as connect_scope:
            async with AsyncExitStack() as stack:
                transport = await open_transport(
                    self.config, stack, connect_timeout=timeout, errlog=self._errlog
                )
                client = Client(
                    watch_eof(
                        transport, lambda: self._mark_lost(lost, "the server closed the connection")
                    ),
                    mode=self.config.protocol,
                    read_timeout_seconds=timeout,
                    message_handler=self._on_message,
                    client_info=CLIENT_INFO,
                    cache=None,
                )
                await stack.enter_async_context(client)
                tools = await _list_tools(client)
                connect_scope.deadline = math.inf  # connected: from now on only loss ends it
                self._was_connected = True
                self._client = client
                self._on_change(self.status.connected(tools))
                logger.info(
                    "MCP server %r connected with %d tools", self.name, len(self.status.tools)
                )
                try:
                    async with anyio.create_task_group() as tg:
                        self._start_watchers(tg, client, lost)
                        await lost.wait()
                        tg.cancel_scope.cancel()
                finally:
                    # Out of the catalogue before the (possibly slow) teardown starts.
                    self._client = None
                    self._on_change(self.status.failed(self._lost_reason, CONNECTION_LOST))
        if connect_scope.cancelled_caught:
            raise TimeoutError(f"no answer within {timeout:g} s")
        return self._lost_reason

    def _start_watchers(self, tg: anyio.abc.TaskGroup, client: Client, lost: asyncio.Event) -> None:
        def on_lost(reason: str) -> None:
            self._mark_lost(lost, reason)

        tg.start_soon(self._refresher)
        capabilities = client.server_capabilities
        modern = client.protocol_version in MODERN_PROTOCOL_VERSIONS
        if modern and capabilities.tools is not None and capabilities.tools.list_changed:
            tg.start_soon(
                functools.partial(
                    listen_for_changes,
                    client,
                    server=self.name,
                    on_changed=self._refresh_wanted.set,
                    on_lost=on_lost,
                )
            )
        if not modern and self.config.transport != "stdio":
            tg.start_soon(
                functools.partial(
                    keep_alive,
                    client,
                    interval=self._keepalive_interval,
                    timeout=self._connect_timeout,
                    check_now=self._check_now,
                    on_lost=on_lost,
                )
            )

    # --- tool list changes ----------------------------------------------------------

    async def _on_message(self, message: Any) -> None:
        # Called from the session's read loop: only signal here, never await the session.
        if isinstance(message, types.ToolListChangedNotification):
            self._refresh_wanted.set()
        await anyio.lowlevel.checkpoint()

    async def _refresher(self) -> None:
        while True:
            await self._refresh_wanted.wait()
            self._refresh_wanted.clear()
            await self.refresh()

    async def refresh(self) -> None:
        """Re-read this server's tool list (no-op unless connected)."""
        client, lost = self._client, self._lost
        if client is None or lost is None:
            return
        async with self._refresh_lock:
            try:
                with anyio.fail_after(self._connect_timeout):
                    tools = await _list_tools(client)
            except Exception as exc:
                if is_connection_error(exc):
                    self._mark_lost(lost, describe(exc))
                else:
                    detail = f"listing tools failed: {describe(exc)}"
                    logger.warning("MCP server %r: %s", self.name, detail)
                    self._on_change(self.status.listing_failed(detail))
                return
            if self._client is client:
                self._on_change(self.status.listed(tools))

    # --- calls ----------------------------------------------------------------------

    async def call(
        self, tool: str, arguments: dict[str, Any], *, user_id: str, timeout: float
    ) -> ToolResult:
        clock = Clock()
        config = self.config
        if not config.enabled:
            return clock.result(f"tool server {self.name!r} is disabled", True)
        if not config.allows(tool):
            return clock.result(f"tool {tool!r} is not offered by server {self.name!r}", True)
        client, lost = self._client, self._lost
        if client is None or lost is None:
            status = self.status
            why = f": {status.user_error}" if status.user_error else ""
            return clock.result(
                f"tool server {self.name!r} is not connected ({status.state.value}{why})", True
            )
        if config.call_timeout is not None:
            timeout = min(timeout, config.call_timeout)
        return await call_on_session(
            client,
            server=self.name,
            tool=tool,
            arguments=arguments,
            user_id=user_id,
            timeout=timeout,
            clock=clock,
            on_lost=lambda reason: self._mark_lost(lost, reason),
            on_suspect=self._check_now.set,
            is_current=lambda: self._client is client,
        )

    def _mark_lost(self, lost: asyncio.Event, reason: str) -> None:
        if not lost.is_set():
            self._lost_reason = reason
            lost.set()


async def _list_tools(client: Client) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    for _ in range(MAX_LIST_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools
