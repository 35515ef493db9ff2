"""The wire to one tool server: a stdio child, Streamable HTTP, or the legacy SSE transport.

``open_transport`` picks the SDK transport for a server's configuration; ``watch_eof``
wraps it so the end of its read stream (a stdio child that exited, an HTTP stream that
closed) is reported at once instead of surfacing only at the next call.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, TextIO

import anyio
import httpx2
from mcp.client import Transport
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage

from aichat_backend.tools import run_as
from aichat_backend.tools.config import ServerConfig

# SSE response streams (and the HTTP read of a long tool call) may stay open this long.
HTTP_READ_TIMEOUT = 300.0


async def open_transport(
    config: ServerConfig, stack: AsyncExitStack, *, connect_timeout: float, errlog: TextIO | None
) -> Transport:
    """The SDK transport for ``config``; what it needs closed later goes on ``stack``."""
    if config.transport == "stdio":
        command, args, env, cwd = run_as.launch(config)
        params = StdioServerParameters(command=command, args=args, env=env, cwd=cwd)
        return stdio_client(params, errlog=errlog or sys.stderr)
    assert config.url is not None
    if config.transport == "sse":
        return sse_client(
            config.url,
            headers=dict(config.headers) or None,
            timeout=connect_timeout,
            sse_read_timeout=HTTP_READ_TIMEOUT,
        )
    http = httpx2.AsyncClient(
        headers=dict(config.headers),
        timeout=httpx2.Timeout(connect_timeout, read=HTTP_READ_TIMEOUT),
    )
    await stack.enter_async_context(http)
    return streamable_http_client(config.url, http_client=http)


@asynccontextmanager
async def watch_eof(
    transport: Transport, on_eof: Callable[[], None]
) -> AsyncIterator[tuple[Any, Any]]:
    """``transport`` with ``on_eof`` called when its read stream ends."""
    async with transport as (read_stream, write_stream):
        yield _EofWatchingStream(read_stream, on_eof), write_stream


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
