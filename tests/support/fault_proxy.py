"""A TCP proxy between the server and its database that a test can break on purpose.

Modes:

* ``pass``   — bytes flow both ways, like a plain network.
* ``freeze`` — connections are accepted and kept open, but nothing is forwarded in
  either direction (a hung database, a black-holed network path). Bytes already read
  wait in the proxy; they flow again if the mode goes back to ``pass``.
* ``drop``   — every open connection is reset and new ones are reset as soon as they
  are accepted (the database restarted or the host went away).
* ``refuse`` — every open connection is reset and the port stops listening, so new
  connections are refused (the host is up, PostgreSQL is not). ``pass`` listens again
  on the same port.

The proxy runs on the test's own event loop: ``await proxy.start()``, then
``await proxy.set_mode(...)`` at any point; ``await proxy.close()`` at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

from tests.support.ports import free_port

Mode = Literal["pass", "freeze", "drop", "refuse"]
CHUNK = 64 * 1024


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self) -> None:
        self.transports: list[asyncio.WriteTransport] = []
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for transport in self.transports:
            transport.abort()  # RST, not a polite FIN: the peer sees a dead connection
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    def __init__(self, upstream_host: str = "127.0.0.1", upstream_port: int = 5432) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode: Mode = "pass"
        # Outside the ephemeral range: no connection can take it while the proxy refuses.
        self.port = free_port()
        self.accepted = 0  # connections accepted so far, whatever the mode
        self._passing = asyncio.Event()
        self._passing.set()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def open_links(self) -> int:
        return len(self._links)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def set_mode(self, mode: Mode) -> None:
        previous, self.mode = self.mode, mode
        if previous == "refuse" and mode != "refuse":
            await self.start()  # the same port again (asyncio sets SO_REUSEADDR)
        if mode == "pass":
            self._passing.set()
            return
        self._passing.clear()
        if mode in ("drop", "refuse"):
            for link in list(self._links):
                link.abort()
            self._links.clear()
        if mode == "refuse" and previous != "refuse" and self._server is not None:
            # close() shuts the listening socket at once; wait_closed() would also wait
            # for held handlers (3.12+), which a frozen link can keep forever.
            self._server.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        self._links.clear()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    # --- internals ------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        link = _Link()
        link.transports.append(writer.transport)
        try:
            if self.mode in ("drop", "refuse"):
                link.abort()
                return
            self._links.add(link)
            # A connection opened while frozen hangs in the handshake, as with a black hole.
            await self._passing.wait()
            if link not in self._links:  # dropped while waiting
                return
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            link.transports.append(up_writer.transport)
            if link not in self._links:
                link.abort()
                return
            link.tasks = [
                asyncio.create_task(self._pump(reader, up_writer)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            # When one direction ends, the whole link ends.
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            link.abort()
            self._links.discard(link)
            self._handlers.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError, asyncio.IncompleteReadError):
            while True:
                await self._passing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    return
                # Frozen after the read: hold the bytes instead of forwarding them.
                await self._passing.wait()
                writer.write(data)
                await writer.drain()
