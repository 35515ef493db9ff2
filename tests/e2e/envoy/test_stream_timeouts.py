"""Heartbeats keep a quiet stream alive through Envoy's stream_idle_timeout.

envoy.yaml's idle timeout (20 s) outlasts three heartbeats (5 s); here both are scaled
down (0.3 s heartbeats, a 1 s idle timeout) so a model that thinks for 2.5 s takes 2.5 s.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import httpx2
import pytest
import pytest_asyncio

from aichat_devtools.dev_token import DevKeys, make_token
from aichat_devtools.fake_llm import Script
from tests.e2e.envoy.helpers import bearer, read_sse
from tests.support.chat import ChatStack, chat_stack
from tests.support.envoy import Envoy, envoy_in_front, render_for_test

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(30)]

IDLE_TIMEOUT = 1.0
HEARTBEAT = 0.3


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChatStack]:
    db = tmp_path_factory.mktemp("db") / "aichat.db"
    async with chat_stack("openai", f"sqlite:///{db}", heartbeat_seconds=HEARTBEAT) as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def envoy(
    stack: ChatStack, dev_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Envoy]:
    config = render_for_test(backend_port=stack.server.port, jwks_path=dev_keys.jwks_path)
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    manager["typed_config"]["stream_idle_timeout"] = f"{IDLE_TIMEOUT}s"
    async with envoy_in_front(config, tmp_path_factory.mktemp("envoy")) as running:
        yield running


async def test_a_thinking_model_does_not_trip_the_idle_timeout(
    http: httpx2.AsyncClient, stack: ChatStack, dev_keys: DevKeys, user: str
) -> None:
    token = make_token(dev_keys, user)
    session = (await http.post("/v1/chat/sessions", json={}, headers=bearer(token))).json()["name"]
    stack.fake.enqueue(Script(tokens=["worth ", "the wait"], ttft=2.5, ttft_after_headers=True))
    async with http.stream(
        "POST", f"/v1/chat/{session}:streamChat", json={"text": "think"}, headers=bearer(token)
    ) as response:
        events = await read_sse(response)
    kinds = [e.kind for e in events]
    assert kinds[-1] == "turnEnded", kinds
    assert events[-1].data["turnEnded"]["outcome"] == "TURN_OUTCOME_COMPLETED"
    first_text = next(e for e in events if e.kind == "textDelta")
    assert first_text.at - events[0].at > 1.5 * IDLE_TIMEOUT  # silent but for heartbeats
    assert kinds.count("heartbeat") >= 3
    gaps = [b.at - a.at for a, b in itertools.pairwise(events)]
    assert max(gaps) < IDLE_TIMEOUT
