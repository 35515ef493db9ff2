"""The chunks of an OpenAI-style streamed completion, read from the HTTP response directly.

The SDK's ``AsyncStream`` passes every chunk through about ten generator layers (its SSE
line decoder, event decoder, event iterator, JSON step and typing checks). We keep the
SDK for the request (auth, headers, errors) and its ``AsyncStream`` for closing the
response, and read ``stream.response`` (public) here: the Server-Sent Events format in one
loop, with what the SDK's stream does on top of it (``[DONE]``, ``{"error": ...}``).
Measured through the adapter, upstream in another process: 30 µs of CPU per chunk
against 40 when each chunk comes in its own read (a paced model), 5.6 against 8.4 when
many share one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai


async def chunks(response: httpx2.Response) -> AsyncIterator[Any]:
    """Each event's JSON ``data``, until ``[DONE]``; an error object raises ``APIError``.

    After ``[DONE]`` the rest of the body is read (nothing more is expected): an HTTP/1.1
    connection is reused only once its response was read to the end.
    """
    done = False
    async for data in events_data(response):
        if done:
            continue
        if data.startswith(b"[DONE]"):
            done = True
            continue
        chunk = json.loads(data)
        if isinstance(chunk, dict) and chunk.get("error"):
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else None
            raise openai.APIError(
                message
                if isinstance(message, str) and message
                else "An error occurred during streaming",
                response.request,
                body=error,
            )
        yield chunk


async def events_data(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The ``data`` of each server-sent event (multi-line data joined by newlines).

    Lines may end in CRLF, LF or CR; a CR at the end of one read waits for the next, as it
    may be half of a CRLF. Comments and the other fields (event, id, retry) are not used
    by completion streams and are skipped; an event cut off by the end of the body is
    dropped, as the format says.
    """
    rest = b""
    data: list[bytes] = []
    # Undecoded when nothing is to be decoded: one layer less for every read.
    encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
    reads = response.aiter_bytes() if encoded else response.aiter_raw()
    async for received in reads:
        block = rest + received if rest else received
        if b"\r" in block:
            held = block.endswith(b"\r")
            block = block[:-1] if held else block
            block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if held:
                block += b"\r"  # kept, unsplit, at the end of the partial line below
        lines = block.split(b"\n")
        rest = lines.pop()  # the unfinished line (empty when the read ended one)
        for line in lines:
            if not line:
                if data:
                    yield data[0] if len(data) == 1 else b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
