"""Helpers for the limits tests: a settable clock, a TCP proxy to Redis that can be
stopped and started again on the same port, and a server that accepts and never answers."""

from __future__ import annotations

import asyncio
import logging

from tests.support.ports import free_port


class FakeClock:
    """A clock a test moves by hand; call it to read it."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def closed_port() -> int:
    """A local port nothing listens on (connections to it are refused), nor will: it is
    not in the kernel's ephemeral range, and no other test worker draws from its block."""
    return free_port()


class StoppableProxy:
    """Forwards 127.0.0.1:<port> to Redis. ``stop()`` resets every connection and closes
    the listener (Redis has gone away: connections are refused); ``start()`` again listens
    on the same port (Redis is back)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        # Outside the ephemeral range: no connection can take it while the proxy is down.
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for transport in list(self._transports):
            transport.abort()  # RST: the client sees a dead connection at once
        self._transports.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        if server is not None:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._transports.add(writer.transport)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            self._transports.add(up_writer.transport)
            pumps = [
                asyncio.create_task(_pump(reader, up_writer)),
                asyncio.create_task(_pump(up_reader, writer)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                up_writer.transport.abort()
                self._transports.discard(up_writer.transport)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()
            self._transports.discard(writer.transport)
            self._tasks.discard(task)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.CancelledError):
        pass


class SilentServer:
    """Accepts TCP connections and never says a word (a hung Redis)."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)

    async def close(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class Records(logging.Handler):
    """Collects the records of one logger, whatever the root logger is set up to do."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno == level]
