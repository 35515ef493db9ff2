"""HTTP/1.1 plumbing: keep-alive requests in, chunked responses out, hang-ups seen."""

from __future__ import annotations

import asyncio
import http
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_MAX_HEAD_BYTES = 64 * 1024


class ClientGone(Exception):
    """The client closed the connection while we were answering."""


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive connection: a byte buffer over the stream reader.

    Reading only through this buffer lets a watcher task read while we stream a response
    (the only way to see a client's FIN) without losing bytes of a next request.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()

    async def _fill(self) -> bool:
        try:
            data = await self.reader.read(65536)
        except ConnectionError:
            return False
        if not data:
            return False
        self.buf += data
        return True

    async def read_request(self) -> HttpRequest | None:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > _MAX_HEAD_BYTES or not await self._fill():
                return None
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        request_line, *header_lines = head.split("\r\n")
        method, path, _version = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        while len(self.buf) < length:
            if not await self._fill():
                return None
        body = bytes(self.buf[:length])
        del self.buf[:length]
        return HttpRequest(method, path, headers, body)

    async def wait_eof(self) -> None:
        """Return when the client closes; bytes it sends meanwhile stay buffered."""
        while await self._fill():
            pass


def reason_phrase(status: int) -> str:
    if status == 529:
        return "Overloaded"
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason_phrase(status)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


async def send_json(
    conn: Connection, status: int, payload: dict[str, Any], extra: Iterable[tuple[str, str]] = ()
) -> None:
    """A whole JSON response (errors, non-streamed replies, the model list)."""
    data = dumps(payload).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(data))), *extra]
    conn.writer.write(head(status, headers) + data)
    await conn.writer.drain()


async def answer_other(conn: Connection, method: str, path: str) -> None:
    """Anything but a completion: the model list (some clients and readiness checks list
    models first), health, else 404."""
    if method == "GET" and path.endswith("/models"):
        model = {"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}
        await send_json(conn, 200, {"object": "list", "data": [model]})
    elif method == "GET" and path in ("", "/health"):
        await send_json(conn, 200, {"status": "ok"})
    else:
        not_found = {"error": {"message": "Not found", "type": "invalid_request_error"}}
        await send_json(conn, 404, not_found)


class Response:
    """Writes one response; every wait races the client's disconnect."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.writer = conn.writer
        self.eof = asyncio.ensure_future(conn.wait_eof())

    async def finish(self) -> None:
        # Wait for the watcher to really stop: a reader still waiting on the stream
        # would make the next request's read fail.
        self.eof.cancel()
        await asyncio.wait({self.eof})

    def _check(self) -> None:
        if self.eof.done():
            raise ClientGone

    async def pause(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.wait({self.eof}, timeout=seconds)
        self._check()

    async def hang(self) -> None:
        await self.eof
        raise ClientGone

    async def write(self, data: bytes) -> None:
        self._check()
        self.writer.write(data)
        try:
            await self.writer.drain()
        except ConnectionError as exc:
            raise ClientGone from exc

    def cut(self) -> None:
        # Close without the terminating zero-length chunk: the client sees a truncated
        # body, as when an upstream or a proxy drops the connection mid-answer.
        self.writer.close()
