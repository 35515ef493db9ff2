"""SIGTERM's order reaches the OpenAI-compatible API too: new requests get a 503 the SDKs
retry (elsewhere, behind a load balancer), and a stream still open when the grace period
ends gets an error event the SDK raises, its partial answer stored."""

from __future__ import annotations

import asyncio

import openai
import pytest
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb

from aichat_backend.server import App
from aichat_devtools.fake_llm import FakeLLMServer, Script
from tests.support.chat import provider_settings
from tests.support.grpc_helpers import md
from tests.support.server import make_settings, running_server

pytestmark = pytest.mark.timeout(60)


async def test_shutdown_refuses_new_requests_then_ends_open_streams(
    sqlite_url: str, user: str
) -> None:
    async with FakeLLMServer() as fake:
        settings = make_settings(sqlite_url, **provider_settings("openai", fake))
        app = App(settings)
        await app.start("127.0.0.1:0")
        client = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{app.openai_port}/v1",
            api_key="unused",  # the door trusts Envoy's x-user-id, sent here directly
            max_retries=0,
            default_headers={"x-user-id": user},
        )
        try:
            fake.enqueue(Script(tokens=["partial ", "answer ", "never"], hang_after=2))
            stream = await client.chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            chunks = stream.__aiter__()
            seen = ""
            while seen != "partial answer ":
                chunk = await chunks.__anext__()
                seen += (chunk.choices[0].delta.content or "") if chunk.choices else ""
            session = stream.response.headers["x-aichat-session"]

            stopping = asyncio.create_task(app.stop(grace=2.0))
            await asyncio.sleep(0)  # stop() has begun: it refuses before its first wait
            with pytest.raises(openai.InternalServerError) as refused:
                await client.models.list()
            assert refused.value.status_code == 503
            assert refused.value.response.headers["retry-after"] == "1"
            assert refused.value.code == "server_shutting_down"

            with pytest.raises(openai.APIError) as ended:  # the grace period ran out
                async for _ in chunks:
                    pass
            assert isinstance(ended.value.body, dict)
            assert ended.value.body["code"] == "server_shutting_down"
            await stopping
        finally:
            await client.close()
    # The answer was stored as it stood when the server stopped.
    async with running_server(make_settings(sqlite_url)) as again:
        page = await again.sessions.ListMessages(
            spb.ListMessagesRequest(parent=session), metadata=md(user)
        )
        answer = page.messages[-1]
        assert (answer.text, answer.state) == ("partial answer ", rpb.MESSAGE_STATE_INCOMPLETE)
