"""The service's own reading of OpenAI-style event streams (``providers/openai_sse.py``).

The adapter tests run it against the fake upstream's real wire format; these cover what
that server never sends: other line endings, reads split anywhere, comments and fields.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Iterable

import httpx2
import openai
import pytest

from aichat_backend.providers.openai_sse import chunks, events_data

pytestmark = pytest.mark.timeout(10)


def response(reads: Iterable[bytes], **headers: str) -> httpx2.Response:
    async def body() -> AsyncIterator[bytes]:
        for read in reads:
            yield read

    request = httpx2.Request("POST", "http://upstream.test/v1/chat/completions")
    return httpx2.Response(200, content=body(), request=request, headers=headers)


def data_of(reads: Iterable[bytes]) -> list[bytes]:
    async def run() -> list[bytes]:
        return [d async for d in events_data(response(reads))]

    return asyncio.run(run())


def every_split(stream: bytes) -> list[list[bytes]]:
    """The stream read whole, a byte at a time, and cut once at every position."""
    cuts = [[stream[:i], stream[i:]] for i in range(1, len(stream))]
    return [[stream], [stream[i : i + 1] for i in range(len(stream))], *cuts]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_events_whatever_the_line_endings_and_however_the_reads_are_cut(newline: bytes) -> None:
    lines = [
        b": a comment",
        b'data: {"a": 1}',
        b"",
        b"event: message",
        b"id: 7",
        b"data:first",
        b"data: second",
        b"",
        b"retry: 100",
        b"",  # no data: no event
        b"data: [DONE]",
        b"",
        b"data: cut off by the end of the body",
    ]
    stream = newline.join(lines)
    want = [b'{"a": 1}', b"first\nsecond", b"[DONE]"]
    for reads in every_split(stream):
        assert data_of(reads) == want, reads


def test_a_compressed_stream_is_decoded_first() -> None:
    # Read undecoded when nothing says it is encoded; a proxy may gzip the stream.
    packed = gzip.compress(b'data: {"n": 1}\n\ndata: {"n": 2}\n\n')

    async def run() -> list[bytes]:
        reads = [packed[:7], packed[7:20], packed[20:]]
        return [d async for d in events_data(response(reads, **{"content-encoding": "gzip"}))]

    assert asyncio.run(run()) == [b'{"n": 1}', b'{"n": 2}']


def test_chunks_are_json_until_done_and_the_body_is_read_to_its_end() -> None:
    read: list[bytes] = []

    async def body() -> AsyncIterator[bytes]:
        for part in (b'data: {"n": 1}\n\n', b'data: {"n": 2}\n\ndata: [DONE]\n\n', b"tail\n"):
            read.append(part)
            yield part

    async def run() -> list[object]:
        request = httpx2.Request("POST", "http://upstream.test/v1/chat/completions")
        return [c async for c in chunks(httpx2.Response(200, content=body(), request=request))]

    assert asyncio.run(run()) == [{"n": 1}, {"n": 2}]
    assert len(read) == 3  # drained past [DONE]: the connection can be reused


def test_an_error_object_in_the_stream_raises_the_sdk_error_with_its_body() -> None:
    error = b'{"error": {"message": "overloaded", "type": "server_error"}}'

    async def run() -> list[object]:
        got = []
        with pytest.raises(openai.APIError) as caught:
            async for c in chunks(response([b'data: {"n": 1}\n\n', b"data: " + error + b"\n\n"])):
                got.append(c)
        assert caught.value.message == "overloaded"
        assert caught.value.body == {"message": "overloaded", "type": "server_error"}
        return got

    assert asyncio.run(run()) == [{"n": 1}]
