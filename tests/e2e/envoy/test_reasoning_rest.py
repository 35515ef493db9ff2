"""Reasoning, usage and cost through the real Envoy, as a browser or curl meets them: SSE
reasoning deltas, a resumed stream (EventSource GET), messages, exports, the turn options
and the caller's own usage as JSON."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx2
import pytest
import pytest_asyncio

from aichat_devtools.fake_llm import Script
from tests.e2e.envoy.helpers import bearer, detail, read_sse, reason, status_body, streamed_text
from tests.support.chat import ChatStack
from tests.support.reasoning_models import reasoning_stack

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(30)]

THOUGHT = "The user asks for a sum. Two and two make four, so I answer four."


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChatStack]:
    """The reasoning models (claude thinks by default) behind the module's Envoy."""
    where = tmp_path_factory.mktemp("reasoning")
    async with reasoning_stack(f"sqlite:///{where / 'aichat.db'}", where) as s:
        yield s


async def new_session(http: httpx2.AsyncClient, token: str, **fields: object) -> str:
    response = await http.post("/v1/chat/sessions", json=fields, headers=bearer(token))
    assert response.status_code == 200, response.text
    return str(response.json()["name"])


async def stream_chat(
    http: httpx2.AsyncClient, token: str, session: str, body: dict[str, object]
) -> list[dict[str, object]]:
    async with http.stream(
        "POST", f"/v1/chat/{session}:streamChat", json=body, headers=bearer(token)
    ) as response:
        assert response.status_code == 200
        return [e.data for e in await read_sse(response)]


def thought_of(events: list[dict[str, object]]) -> str:
    return "".join(
        str(e["reasoningDelta"]["text"])  # type: ignore[index]
        for e in events
        if "reasoningDelta" in e
    )


async def test_reasoning_streams_as_its_own_sse_events_and_is_stored(
    http: httpx2.AsyncClient, stack: ChatStack, token: str
) -> None:
    session = await new_session(http, token)
    stack.fake.enqueue(
        Script(reasoning=THOUGHT, text="Four.", input_tokens=1000, output_tokens=500)
    )
    async with http.stream(
        "POST", f"/v1/chat/{session}:streamChat", json={"text": "2+2?"}, headers=bearer(token)
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await read_sse(response)
    kinds = [e.kind for e in events if e.kind != "heartbeat"]  # a slow start may beat
    assert kinds[1] == "reasoningDelta" and "textDelta" in kinds
    assert kinds.index("textDelta") > max(i for i, k in enumerate(kinds) if k == "reasoningDelta")
    assert thought_of([e.data for e in events]) == THOUGHT
    assert streamed_text(events) == "Four."
    ended = events[-1].data["turnEnded"]
    usage = ended["usage"]
    assert (usage["inputTokens"], usage["outputTokens"]) == ("1000", "500")  # int64: strings
    assert int(usage["reasoningTokens"]) > 0
    cost = usage["cost"]  # 0.0105 EUR
    assert (cost["currencyCode"], int(cost.get("units", "0")), cost["nanos"]) == (
        "EUR",
        0,
        10_500_000,
    )
    assert ended["message"]["reasoning"]["text"] == THOUGHT

    listed = await http.get(f"/v1/chat/{session}/messages", headers=bearer(token))
    answer = listed.json()["messages"][-1]
    assert answer["reasoning"]["text"] == THOUGHT and answer["usage"]["cost"] == usage["cost"]

    export = await http.get(
        f"/v1/chat/{session}:export",
        params={"format": "markdown", "includeReasoning": "true"},
        headers=bearer(token),
    )
    assert export.status_code == 200 and "<summary>Thinking</summary>" in export.text
    assert THOUGHT in export.text
    plain = await http.get(f"/v1/chat/{session}:export?format=json", headers=bearer(token))
    assert "reasoning" not in json.loads(plain.text)["messages"][-1]


async def test_an_eventsource_resume_replays_the_reasoning(
    http: httpx2.AsyncClient, stack: ChatStack, token: str
) -> None:
    session = await new_session(http, token, model="gpt")
    stack.fake.enqueue(Script(reasoning=THOUGHT, text="It is four.", token_delay=0.01))
    events = await stream_chat(http, token, session, {"text": "2+2?"})
    turn = str(events[0]["turn"])
    first_reasoning = next(int(str(e["sequence"])) for e in events if "reasoningDelta" in e)
    async with http.stream(
        "GET",
        f"/v1/chat/{turn}:streamEvents",
        params={"afterSeq": str(first_reasoning), "access_token": token},
        headers={"accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        resumed = [e.data for e in await read_sse(response)]
    assert resumed == [e for e in events if int(str(e["sequence"])) > first_reasoning]
    assert thought_of(events[:first_reasoning]) + thought_of(resumed) == THOUGHT


async def test_turn_options_and_their_refusal_as_json(
    http: httpx2.AsyncClient, stack: ChatStack, token: str
) -> None:
    session = await new_session(http, token, model="gpt")
    stack.fake.enqueue(Script(text="quick"))
    body = {"text": "hi", "options": {"reasoningEffort": "minimal"}}
    reply = await http.post(f"/v1/chat/{session}:sendMessage", json=body, headers=bearer(token))
    assert reply.status_code == 200, reply.text
    assert stack.fake.requests[-1].body["reasoning_effort"] == "minimal"
    body = {"text": "hi", "options": {"thinkingBudgetTokens": 4000}}  # gpt does not think so
    refused = await http.post(f"/v1/chat/{session}:sendMessage", json=body, headers=bearer(token))
    assert refused.status_code == 400
    status = status_body(refused)
    assert reason(status) == "INVALID_REASONING_OPTION"
    bad_request = detail(status, "BadRequest")
    assert bad_request is not None
    assert bad_request["fieldViolations"][0]["field"] == "options.thinking_budget_tokens"


async def test_my_usage_as_json(http: httpx2.AsyncClient, stack: ChatStack, token: str) -> None:
    before = (await http.get("/v1/chat/usage", headers=bearer(token))).json()
    session = await new_session(http, token)
    stack.fake.enqueue(Script(text="paid", input_tokens=2000, output_tokens=10))
    await stream_chat(http, token, session, {"text": "spend"})
    response = await http.get("/v1/chat/usage", headers=bearer(token))
    assert response.status_code == 200, response.text
    after = response.json()
    today, month = after["today"], after["thisMonth"]
    spent = int(today["inputTokens"]) - int(before["today"].get("inputTokens", "0"))
    assert spent == 2000
    assert today["cost"]["currencyCode"] == "EUR"
    assert today["cost"]["nanos"] - before["today"]["cost"].get("nanos", 0) == 6_150_000
    assert month["startDay"].endswith("-01") and month["endDay"] == today["endDay"]
    unauthenticated = await http.get("/v1/chat/usage")
    assert unauthenticated.status_code == 401
