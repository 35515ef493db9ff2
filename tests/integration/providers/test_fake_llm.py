"""The fake upstream itself: connection reuse, non-streamed replies, the standalone CLI."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx2
import openai
import pytest

import aichat_backend
from aichat_backend.errors import AichatError
from aichat_backend.providers.context_errors import ContextTooLong
from aichat_devtools.fake_llm import FakeLLMServer, Script
from tests.integration.providers.support import Upstream, ask, collect, openai_provider, text_of
from tests.support.http import TLS

pytestmark = pytest.mark.timeout(10)

# The package may not be installed (editable) yet: give the child process the source root.
SRC_ROOT = Path(aichat_backend.__file__).resolve().parents[1]


async def test_keep_alive_reuses_one_connection(upstream: Upstream) -> None:
    for word in ("one", "two", "three"):
        assert text_of(await collect(upstream.provider, ask(word))) == f"Echo: {word}"
    assert upstream.server.connections_accepted == 1


async def test_a_cut_stream_does_not_poison_the_next_request(upstream: Upstream) -> None:
    upstream.server.enqueue(Script(text="a b c", cut_after=1))
    with pytest.raises(AichatError):
        await collect(upstream.provider, ask())
    assert text_of(await collect(upstream.provider, ask("again"))) == "Echo: again"


async def test_non_streamed_completion(fake: FakeLLMServer) -> None:
    fake.enqueue(Script(text="whole answer", tool_calls=[("c1", "f", {"x": 1})]))
    client = openai.AsyncOpenAI(api_key="k", base_url=fake.base_url, max_retries=0)
    try:
        reply = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    finally:
        await client.close()
    assert reply.choices[0].message.content == "whole answer"
    assert reply.choices[0].finish_reason == "tool_calls"
    calls = reply.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        ("c1", "f", '{"x": 1}')
    ]
    assert reply.usage is not None and reply.usage.completion_tokens > 0


async def test_standalone_process() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aichat_devtools.fake_llm",
        "--port",
        "0",
        "--tokens",
        "200",
        "--ttft-ms",
        "5",
        "--context-window",
        "test-model=50",
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 8)).decode().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.removeprefix("listening on ")
        async with httpx2.AsyncClient(
            verify=TLS,
        ) as http:
            assert (await http.get(url + "/health")).status_code == 200
        provider = openai_provider(url + "/v1", timeout=5)
        events = await collect(provider, ask())
        with pytest.raises(ContextTooLong) as refused:  # past --context-window
            await collect(provider, ask("many words " * 50))
        await provider.aclose()
        assert (
            text_of(events).split()
            == (["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing"] * 29)[:200]
        )
        assert refused.value.context_window == 50
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 5) == 0
