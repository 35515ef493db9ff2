"""Arm F of the benchmark: the smallest grpc.aio relay there is, with no project code.

``StreamChat`` opens the openai SDK stream to the upstream and relays each text chunk as
one ``StreamChatResponse`` — no identity, no database, no events, no coalescing;
``SendMessage`` reads the same stream whole and answers once, as the backend's unary turn
does. What the real backend adds on top of this is what we could still remove; this is
the floor. It
reads the stream the cheapest way the SDK allows (the body posted as plain JSON, chunks
kept as dicts: no per-request parameter transform, no pydantic model per chunk), as the
backend's adapter does, on the same HTTP client (aiohttp), so the floor is not the SDK's own
overhead.
Only the generated message classes are shared with the service, so both speak the same
wire format to the same client.

    python -m aichat_devtools.bench_relay --port N --upstream http://127.0.0.1:P/v1

prints ``listening on 127.0.0.1:N``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import Any

import grpc
import openai
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb


class Relay:
    def __init__(self, upstream: str) -> None:
        # The same HTTP client as the backend's default (AICHAT_LLM_HTTP_CLIENT=aiohttp),
        # so the floor is not a slower HTTP stack than the service's.
        self._client = openai.AsyncOpenAI(
            base_url=upstream,
            api_key="bench",
            max_retries=0,
            http_client=openai.DefaultAioHttpClient(),
        )

    async def _texts(self, prompt: str) -> AsyncIterator[str]:
        stream = await self._client.post(
            "/chat/completions",
            body={
                "model": "bench",
                "messages": [{"role": "user", "content": prompt}],
                "stream": True,
            },
            cast_to=object,
            stream=True,
            stream_cls=openai.AsyncStream[object],
        )
        async with stream:
            async for chunk in stream:
                choices = chunk.get("choices") if isinstance(chunk, dict) else None
                text = (choices[0].get("delta") or {}).get("content") if choices else None
                if text:
                    yield text

    async def stream_chat(
        self, request: cpb.StreamChatRequest, context: Any
    ) -> AsyncIterator[cpb.StreamChatResponse]:
        sequence = 0
        async for text in self._texts(request.text):
            sequence += 1
            yield cpb.StreamChatResponse(sequence=sequence, text_delta=cpb.TextDelta(text=text))

    async def send_message(
        self, request: cpb.SendMessageRequest, context: Any
    ) -> cpb.SendMessageResponse:
        parts = [text async for text in self._texts(request.text)]
        return cpb.SendMessageResponse(
            message=rpb.Message(text="".join(parts)), outcome=cpb.TURN_OUTCOME_COMPLETED
        )

    async def aclose(self) -> None:
        await self._client.close()


async def _serve(port: int, upstream: str) -> None:
    relay = Relay(upstream)
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "aichat.v1.ChatService",
        {
            "StreamChat": grpc.unary_stream_rpc_method_handler(
                relay.stream_chat,
                request_deserializer=cpb.StreamChatRequest.FromString,
                response_serializer=cpb.StreamChatResponse.SerializeToString,
            ),
            "SendMessage": grpc.unary_unary_rpc_method_handler(
                relay.send_message,
                request_deserializer=cpb.SendMessageRequest.FromString,
                response_serializer=cpb.SendMessageResponse.SerializeToString,
            ),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on 127.0.0.1:{bound}", flush=True)
    await stop.wait()
    await server.stop(0.5)
    await relay.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", required=True, help="OpenAI base URL, …/v1")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.upstream))


if __name__ == "__main__":
    main()
