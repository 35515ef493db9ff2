"""The MCP client pool: one long-lived connection per configured tool server.

Each enabled server gets its own background task that owns its connection from end to
end: it enters the SDK's transport and session context managers, keeps them open while
calls are made on the shared session from any task, and exits them itself (anyio requires
a task group or cancel scope to be left by the task that entered it). When a connection
fails or dies the task marks the server FAILED with the reason and tries again with
exponential backoff; one slow or broken server never holds up the others or start-up.

A dead connection is noticed by whichever comes first: the stdio pipe reaching EOF (the
child exited), the server's event stream dropping (2026-07-28 servers), a keepalive ping
failing (handshake-era HTTP and SSE sessions, which have no such stream), the transport
crashing (an HTTP server that went away), or a call failing with "connection closed" or
"session terminated".

``call`` never raises for a tool's failure: an ``is_error`` result, a timeout, a protocol
error or a vanished server all come back as ``ToolResult(is_error=True)`` with a message
the model can read. Only cancellation of the caller propagates.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO, cast

import anyio
import anyio.lowlevel
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client import Transport
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost, ToolsListChanged
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import CONNECTION_CLOSED, INVALID_REQUEST, REQUEST_TIMEOUT
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from aichat_backend.tools.base import (
    USER_ID_META_KEY,
    ServerState,
    ToolAnnotations,
    ToolInfo,
    ToolResult,
    ToolServerInfo,
)
from aichat_backend.tools.config import DEFAULT_CONNECT_TIMEOUT, ServerConfig, load_servers_file
from aichat_backend.tools.naming import model_names

logger = logging.getLogger(__name__)

CLIENT_INFO = types.Implementation(name="aichat-backend", version="0.1.0")
RESOURCE_PREFIX = "toolServers/"
# A call gets the SDK's own request timeout; this outer bound only catches a call stuck
# before its request was even written (a child that stopped reading its stdin).
_TIMEOUT_GRACE = 1.0
_MAX_LIST_PAGES = 100
# SSE response streams (and the HTTP read of a long tool call) may stay open this long.
_HTTP_READ_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before reconnect attempt ``n`` (0-based): initial * multiplier**n, capped."""

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.1  # +-10 %: replicas restarted together do not retry in lockstep

    def delay(self, attempt: int) -> float:
        base = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return base * (1 + random.uniform(-self.jitter, self.jitter))


class MCPPool:
    """The ``ToolProvider`` over real MCP servers (see ``aichat_backend.tools.base``).

    Use: ``pool = MCPPool.from_file(settings.mcp_servers_file); await pool.start(); ...;
    await pool.aclose()``, all on the serving event loop. ``start`` returns at once;
    ``wait_ready`` waits for every enabled server's first attempt (tests, or a bounded
    wait at start-up). Calls from many tasks at once share each server's one session.
    """

    def __init__(
        self,
        configs: Sequence[ServerConfig],
        *,
        connect_timeout_default: float = DEFAULT_CONNECT_TIMEOUT,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
        reconnect_multiplier: float = 2.0,
        keepalive_interval: float = 30.0,
        errlog: TextIO | None = None,
    ) -> None:
        names = [c.name for c in configs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"MCP servers defined twice: {duplicates}")
        backoff = Backoff(reconnect_initial, reconnect_max, reconnect_multiplier)
        self._servers: dict[str, _ServerConnection] = {
            c.name: _ServerConnection(
                c,
                on_change=self._on_server_change,
                connect_timeout=c.timeout or connect_timeout_default,
                backoff=backoff,
                keepalive_interval=keepalive_interval,
                errlog=errlog,
            )
            for c in configs
        }
        self._catalogue: list[ToolInfo] = []
        self._by_model: dict[str, ToolInfo] = {}
        self._by_resource: dict[str, ToolInfo] = {}
        self._changed = asyncio.Event()
        self._started = False
        self._closed = False

    @classmethod
    def from_file(
        cls,
        path: str | Path | None,
        *,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> MCPPool:
        """The pool for ``AICHAT_MCP_SERVERS_FILE`` (none: an empty pool).

        Raises ``ValueError`` naming the bad entry; start-up maps it to exit code 2.
        """
        configs = [] if path is None else load_servers_file(path, environ=environ)
        return cls(configs, **options)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting to every enabled server in the background; returns at once."""
        if self._started:
            return
        self._started = True
        for server in self._servers.values():
            server.start()

    async def aclose(self) -> None:
        """Close every session and stop every stdio child (bounded; safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(*(s.stop() for s in self._servers.values()))
        self._rebuild_catalogue()

    async def __aenter__(self) -> MCPPool:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def wait_ready(self, timeout: float) -> bool:
        """Until every enabled server has had its first attempt (connected or failed).

        Returns False if ``timeout`` passed first; never raises for a slow server.
        """
        return await self.wait_until(
            lambda: all(s.attempted for s in self._servers.values() if s.config.enabled),
            timeout,
        )

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Until ``predicate()`` holds, re-checked on every server state or catalogue change."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._changed  # taken before the check, so no change is missed
                    if predicate():
                        return True
                    await changed.wait()
        except TimeoutError:
            return predicate()

    # --- ToolProvider ----------------------------------------------------------------

    def tools(self) -> list[ToolInfo]:
        return list(self._catalogue)

    async def refresh(self) -> list[ToolInfo]:
        await asyncio.gather(*(s.refresh() for s in self._servers.values()))
        return self.tools()

    def servers(self) -> list[ToolServerInfo]:
        return [s.info() for s in self._servers.values()]

    def connect_count(self, server: str) -> int:
        """How many times ``server`` has connected (1 after start, +1 per reconnect)."""
        return self._servers[server].connects

    def find(self, name: str) -> ToolInfo | None:
        if name.startswith(RESOURCE_PREFIX):
            return self._by_resource.get(name)
        return self._by_model.get(name)

    async def call(
        self, tool: ToolInfo, arguments: dict[str, Any], *, user_id: str, timeout: float
    ) -> ToolResult:
        server = self._servers.get(tool.server)
        if server is None:
            return ToolResult(f"unknown tool server {tool.server!r}", True, 0)
        return await server.call(tool.tool, arguments, user_id=user_id, timeout=timeout)

    # --- catalogue -------------------------------------------------------------------

    def _on_server_change(self, tools_changed: bool) -> None:
        if tools_changed:
            self._rebuild_catalogue()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _rebuild_catalogue(self) -> None:
        listed = [
            (server, tool)
            for server in self._servers.values()
            if server.state is ServerState.CONNECTED
            for tool in server.tools
        ]
        names = model_names((server.config.name, tool.name) for server, tool in listed)
        catalogue = [
            tool_info(server.config, tool, names[(server.config.name, tool.name)])
            for server, tool in listed
        ]
        self._catalogue = catalogue
        self._by_model = {t.model_name: t for t in catalogue}
        self._by_resource = {t.resource_name: t for t in catalogue}


class _ServerConnection:
    """One server: its state, its cached tool list, and the task that owns its session."""

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
        self.state = ServerState.CONNECTING if config.enabled else ServerState.DISABLED
        self.last_error = ""
        self.tools: list[types.Tool] = []
        self.attempted = False
        self.client: Client | None = None
        self._was_connected = False
        self.connects = 0
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
        self.client = None
        self.last_error = "the pool is closed"

    async def _run(self, scope: anyio.CancelScope) -> None:
        attempt = 0
        logged = ""
        with scope:
            while True:
                self._set_state(ServerState.CONNECTING)
                self._was_connected = False
                try:
                    reason = await self._connect_and_serve()
                except Exception as exc:  # any failure of this server is its state, not ours
                    reason = _describe(exc)
                if self._was_connected:
                    attempt, logged = 0, ""
                delay = self._backoff.delay(attempt)
                attempt += 1
                self._set_failed(reason)
                # Once per distinct problem: a server down for hours does not flood the log.
                log = logger.warning if reason != logged else logger.debug
                log(
                    "MCP server %r %s (%s); retrying in %.1f s",
                    self.name,
                    "lost its connection" if self._was_connected else "failed to connect",
                    self.last_error,
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
                transport = await self._open_transport(stack)
                client = Client(
                    _watch_eof(
                        transport, lambda: self._mark_lost(lost, "the server closed the connection")
                    ),
                    mode=self.config.protocol,
                    read_timeout_seconds=timeout,
                    message_handler=self._on_message,
                    client_info=CLIENT_INFO,
                    cache=None,
                )
                await stack.enter_async_context(client)
                tools = await self._list_tools(client)
                connect_scope.deadline = math.inf  # connected: from now on only loss ends it
                self._was_connected = True
                self.client = client
                self._connected(tools)
                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._refresher, client)
                        capabilities = client.server_capabilities
                        modern = client.protocol_version in MODERN_PROTOCOL_VERSIONS
                        if (
                            modern
                            and capabilities.tools is not None
                            and capabilities.tools.list_changed
                        ):
                            tg.start_soon(self._listener, client, lost)
                        if not modern and self.config.transport != "stdio":
                            tg.start_soon(self._keepalive, client, lost)
                        await lost.wait()
                        tg.cancel_scope.cancel()
                finally:
                    # Out of the catalogue before the (possibly slow) teardown starts.
                    self.client = None
                    self._set_failed(self._lost_reason)
        if connect_scope.cancelled_caught:
            raise TimeoutError(f"no answer within {timeout:g} s")
        return self._lost_reason

    async def _open_transport(self, stack: AsyncExitStack) -> Transport:
        config = self.config
        if config.transport == "stdio":
            assert config.command is not None
            params = StdioServerParameters(
                command=config.command,
                args=list(config.args),
                env=config.spawn_env(),
                cwd=config.cwd,
            )
            return stdio_client(params, errlog=self._errlog or sys.stderr)
        assert config.url is not None
        if config.transport == "sse":
            return sse_client(
                config.url,
                headers=dict(config.headers) or None,
                timeout=self._connect_timeout,
                sse_read_timeout=_HTTP_READ_TIMEOUT,
            )
        http = httpx2.AsyncClient(
            headers=dict(config.headers),
            timeout=httpx2.Timeout(self._connect_timeout, read=_HTTP_READ_TIMEOUT),
        )
        await stack.enter_async_context(http)
        return streamable_http_client(config.url, http_client=http)

    async def _list_tools(self, client: Client) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(_MAX_LIST_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    # --- tool list changes ----------------------------------------------------------

    async def _on_message(self, message: Any) -> None:
        # Called from the session's read loop: only signal here, never await the session.
        if isinstance(message, types.ToolListChangedNotification):
            self._refresh_wanted.set()
        await anyio.lowlevel.checkpoint()

    async def _listener(self, client: Client, lost: asyncio.Event) -> None:
        """2026-07-28 servers announce list changes on a ``subscriptions/listen`` stream."""
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for event in subscription:
                    if isinstance(event, ToolsListChanged):
                        self._refresh_wanted.set()
        except SubscriptionLost:
            self._mark_lost(lost, "the server's event stream dropped")
        except ListenNotSupportedError:
            pass
        except Exception as exc:
            if _is_connection_error(exc):
                self._mark_lost(lost, _describe(exc))
            else:  # the session still works; we just will not hear of list changes
                logger.warning(
                    "MCP server %r: cannot listen for changes: %s", self.name, _describe(exc)
                )

    async def _keepalive(self, client: Client, lost: asyncio.Event) -> None:
        """Handshake-era HTTP sessions die silently (the SDK re-opens its GET stream): ping.

        Every ``keepalive_interval``, and at once when a call failed oddly. An error answer
        means the session is gone (a restarted server forgot it: servers word that
        differently, so no message is matched); a slow answer does not, since a busy server
        may answer pings only between tool calls.
        """
        while True:
            with anyio.move_on_after(self._keepalive_interval):
                await self._check_now.wait()
            self._check_now.clear()
            try:
                with anyio.move_on_after(self._connect_timeout):
                    await client.session.send_request(
                        types.PingRequest(),
                        types.EmptyResult,
                        request_read_timeout_seconds=self._connect_timeout * 2,
                    )
            except Exception as exc:
                if isinstance(exc, MCPError) or _is_connection_error(exc):
                    self._mark_lost(lost, f"keepalive failed: {_describe(exc)}")
                    return

    async def _refresher(self, client: Client) -> None:
        while True:
            await self._refresh_wanted.wait()
            self._refresh_wanted.clear()
            await self.refresh()

    async def refresh(self) -> None:
        """Re-read this server's tool list (no-op unless connected)."""
        client, lost = self.client, self._lost
        if client is None or lost is None:
            return
        async with self._refresh_lock:
            try:
                with anyio.fail_after(self._connect_timeout):
                    tools = await self._list_tools(client)
            except Exception as exc:
                if _is_connection_error(exc):
                    self._mark_lost(lost, _describe(exc))
                else:
                    self.last_error = f"listing tools failed: {_describe(exc)}"
                    logger.warning("MCP server %r: %s", self.name, self.last_error)
                    self._on_change(False)
                return
            if self.client is client:
                self.tools = self._allowed(tools)
                self._on_change(True)

    # --- calls ----------------------------------------------------------------------

    async def call(
        self, tool: str, arguments: dict[str, Any], *, user_id: str, timeout: float
    ) -> ToolResult:
        started = time.monotonic()

        def result(
            text: str,
            is_error: bool,
            structured: dict[str, Any] | None = None,
            *,
            timed_out: bool = False,
        ) -> ToolResult:
            elapsed = int((time.monotonic() - started) * 1000)
            return ToolResult(text, is_error, elapsed, structured, timed_out=timed_out)

        config = self.config
        if not config.enabled:
            return result(f"tool server {self.name!r} is disabled", True)
        if not config.allows(tool):
            return result(f"tool {tool!r} is not offered by server {self.name!r}", True)
        client, lost = self.client, self._lost
        if client is None or lost is None:
            why = f": {self.last_error}" if self.last_error else ""
            return result(
                f"tool server {self.name!r} is not connected ({self.state.value}{why})", True
            )
        if config.call_timeout is not None:
            timeout = min(timeout, config.call_timeout)
        too_late = f"tool {tool!r} on server {self.name!r} did not answer within {timeout:g} s"
        try:
            with anyio.move_on_after(timeout + _TIMEOUT_GRACE) as deadline:
                answer = await client.call_tool(
                    tool,
                    arguments,
                    read_timeout_seconds=timeout,
                    meta=cast(types.RequestParamsMeta, {USER_ID_META_KEY: user_id}),
                )
            if deadline.cancelled_caught:
                return result(too_late, True, timed_out=True)
        except MCPError as exc:
            if _is_connection_error(exc):
                self._mark_lost(lost, _describe(exc))
                return result(
                    f"tool server {self.name!r} went away during the call; reconnecting", True
                )
            # The SDK's own timeout comes after `timeout`; an early -32001 is the server's.
            if exc.code == REQUEST_TIMEOUT and time.monotonic() - started >= timeout * 0.9:
                return result(too_late, True, timed_out=True)
            self._check_now.set()  # is the session itself still good? (handshake-era HTTP)
            return result(
                f"tool server {self.name!r} rejected the call to {tool!r}: "
                f"{exc.message} (code {exc.code})",
                True,
            )
        except Exception as exc:
            if _is_connection_error(exc) or self.client is not client:
                self._mark_lost(lost, _describe(exc))
                return result(
                    f"tool server {self.name!r} went away during the call; reconnecting", True
                )
            return result(
                f"calling {tool!r} on server {self.name!r} failed: {_describe(exc)}", True
            )
        text, structured = _result_content(answer)
        if answer.is_error and not text:
            text = f"tool {tool!r} reported an error without a message"
        return result(text, answer.is_error, structured)

    # --- state ----------------------------------------------------------------------

    def info(self) -> ToolServerInfo:
        return ToolServerInfo(
            name=self.name,
            description=self.config.description,
            transport=self.config.transport,
            state=self.state,
            tool_count=len(self.tools) if self.state is ServerState.CONNECTED else 0,
            last_error=self.last_error,
        )

    def _allowed(self, tools: list[types.Tool]) -> list[types.Tool]:
        seen: set[str] = set()
        allowed = []
        for tool in tools:
            if self.config.allows(tool.name) and tool.name not in seen:
                seen.add(tool.name)
                allowed.append(tool)
        return allowed

    def _connected(self, tools: list[types.Tool]) -> None:
        self.tools = self._allowed(tools)
        self.state = ServerState.CONNECTED
        self.last_error = ""
        self.attempted = True
        self.connects += 1
        logger.info("MCP server %r connected with %d tools", self.name, len(self.tools))
        self._on_change(True)

    def _set_state(self, state: ServerState) -> None:
        was_connected = self.state is ServerState.CONNECTED
        self.state = state
        self._on_change(was_connected)

    def _set_failed(self, reason: str) -> None:
        was_connected = self.state is ServerState.CONNECTED
        self.state = ServerState.FAILED
        self.last_error = reason or "connection lost"
        self.tools = []
        self.attempted = True
        self._on_change(was_connected)

    def _mark_lost(self, lost: asyncio.Event, reason: str) -> None:
        if not lost.is_set():
            self._lost_reason = reason
            lost.set()


# --- helpers ---------------------------------------------------------------------------


class _EofWatchingStream:
    """A transport's read stream that reports its end (a stdio child that exited)."""

    def __init__(self, inner: Any, on_eof: Callable[[], None]):  # inner: the SDK's ReadStream
        self._inner = inner
        self._on_eof = on_eof

    @property
    def last_context(self) -> Any:  # the dispatcher reads the sender's contextvars here
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        try:
            item: SessionMessage | Exception = await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._on_eof()
            raise
        return item

    def __aiter__(self) -> _EofWatchingStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            item: SessionMessage | Exception = await self._inner.__anext__()
        except (StopAsyncIteration, anyio.ClosedResourceError):
            self._on_eof()
            raise
        return item

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _EofWatchingStream:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._inner.__aexit__(exc_type, exc, tb)


@asynccontextmanager
async def _watch_eof(
    transport: Transport, on_eof: Callable[[], None]
) -> AsyncIterator[tuple[Any, Any]]:
    async with transport as (read_stream, write_stream):
        yield _EofWatchingStream(read_stream, on_eof), write_stream


def tool_info(config: ServerConfig, tool: types.Tool, model_name: str) -> ToolInfo:
    """What the engine sees of one listed tool: its annotations and effective policy."""
    return ToolInfo(
        server=config.name,
        tool=tool.name,
        model_name=model_name,
        description=tool.description or "",
        input_schema=dict(tool.input_schema),
        annotations=_annotations(tool),
        approval=config.approval_for(tool.name),
    )


def _annotations(tool: types.Tool) -> ToolAnnotations:
    a = tool.annotations
    if a is None:
        return ToolAnnotations(title=tool.title or "", destructive=True, open_world=True)
    read_only = bool(a.read_only_hint)
    return ToolAnnotations(
        title=a.title or tool.title or "",
        read_only=read_only,
        # The spec's defaults: a tool that may write is assumed destructive and open-world.
        destructive=(not read_only) if a.destructive_hint is None else a.destructive_hint,
        idempotent=bool(a.idempotent_hint),
        open_world=True if a.open_world_hint is None else a.open_world_hint,
    )


def _result_content(answer: types.CallToolResult) -> tuple[str, dict[str, Any] | None]:
    parts: list[str] = []
    for block in answer.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent):
            parts.append(f"[image {block.mime_type}, {len(block.data) * 3 // 4} bytes]")
        elif isinstance(block, types.AudioContent):
            parts.append(f"[audio {block.mime_type}, {len(block.data) * 3 // 4} bytes]")
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[resource link {block.uri}{' ' + block.name if block.name else ''}]")
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[binary resource {resource.uri} {resource.mime_type or ''}]".strip())
        else:
            parts.append(f"[{getattr(block, 'type', 'unknown')} content]")
    structured_raw = answer.structured_content
    structured: dict[str, Any] | None
    if structured_raw is None or isinstance(structured_raw, dict):
        structured = structured_raw
    else:
        structured = {"result": structured_raw}
    text = "\n".join(parts)
    if not text and structured is not None:
        text = json.dumps(structured, ensure_ascii=False, default=str)
    return text, structured


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _describe(exc: BaseException) -> str:
    leaf = _leaves(exc)[0]
    if isinstance(leaf, MCPError):
        return f"{leaf.message} (code {leaf.code})"
    text = str(leaf)
    return f"{type(leaf).__name__}: {text}" if text else type(leaf).__name__


def _is_connection_error(exc: BaseException) -> bool:
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
