"""Context that never overflows (issue 26) through the real Envoy, as a browser meets it:
200 turns on a 4,096-token model (the fake upstream refuses past its window as OpenAI
does) as Server-Sent Events, each with the gauge's figures, the compactions as their own
``contextCompacted`` events, and the summaries marked in the messages' JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest
import pytest_asyncio

from aichat_devtools.fake_llm import FakeLLMServer
from tests.e2e.envoy.helpers import bearer, read_sse
from tests.support.chat import MODELS, ChatStack, provider_settings
from tests.support.server import make_settings, running_server

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(240)]

WINDOW = 4096


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChatStack]:
    db = tmp_path_factory.mktemp("context") / "aichat.db"
    async with FakeLLMServer(context_windows={MODELS["openai"]: WINDOW}) as fake:
        settings = make_settings(
            f"sqlite:///{db}", **provider_settings("openai", fake), llm_context_window=WINDOW
        )
        async with running_server(settings) as server:
            yield ChatStack(server=server, fake=fake, provider="openai")


async def test_two_hundred_turns_as_sse_with_gauge_and_compactions(
    http: httpx2.AsyncClient, token: str
) -> None:
    created = await http.post("/v1/chat/sessions", json={}, headers=bearer(token))
    assert created.status_code == 200, created.text
    session = created.json()["name"]
    compacted: list[dict[str, object]] = []
    for turn in range(200):
        text = " ".join(f"t{turn}w{i}" for i in range(150))
        async with http.stream(
            "POST", f"/v1/chat/{session}:streamChat", json={"text": text}, headers=bearer(token)
        ) as response:
            assert response.status_code == 200
            events = await read_sse(response)
        ended = events[-1].data["turnEnded"]
        assert ended["outcome"] == "TURN_OUTCOME_COMPLETED", (turn, ended)
        gauge = events[0].data["turnStarted"]["context"]
        assert int(gauge["windowTokens"]) == WINDOW and int(gauge["tokens"]) > 0
        assert 0 < int(ended["context"]["tokens"]) <= WINDOW
        compacted += [e.data["contextCompacted"] for e in events if e.kind == "contextCompacted"]
    assert compacted and not any(c.get("afterRefusal") for c in compacted)
    first = compacted[0]
    assert int(first["tokensAfter"]) < int(first["tokensBefore"])  # type: ignore[call-overload]
    marked, listed, page_token = [], 0, ""
    while True:
        page = await http.get(
            f"/v1/chat/{session}/messages",
            params={"pageSize": 100, "pageToken": page_token},
            headers=bearer(token),
        )
        assert page.status_code == 200, page.text
        body = page.json()
        listed += len(body["messages"])
        marked += [m["name"] for m in body["messages"] if m.get("contextSummary", {}).get("text")]
        page_token = body.get("nextPageToken", "")
        if not page_token:
            break
    assert listed == 400  # every original message, the summaries marked on them
    assert {c["throughMessage"] for c in compacted} <= set(marked)
