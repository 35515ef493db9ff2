"""The conversation tree over REST/SSE through the real Envoy (issue 25): regenerate and
edit stream Server-Sent Events like :streamChat, messages carry their parent and sibling
position in JSON, branches are listed, switched and forked, another user's are 404."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from aichat_devtools.dev_token import DevKeys, make_token
from aichat_devtools.fake_llm import Script
from tests.e2e.envoy.helpers import bearer, read_sse, reason, status_body, streamed_text
from tests.e2e.envoy.test_rest import new_session
from tests.support.chat import ChatStack

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(30)]


def path_of(name: str) -> str:
    """A resource name as a REST path: /v1/chat/sessions/{s}/messages/{m}."""
    return f"/v1/chat/{name}"


async def sse(http: httpx2.AsyncClient, method: str, url: str, token: str, **kw: Any) -> list[Any]:
    async with http.stream(method, url, headers=bearer(token), **kw) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        return await read_sse(response)


async def listed(http: httpx2.AsyncClient, session: str, token: str, **params: Any) -> list[Any]:
    got = await http.get(f"/v1/chat/{session}/messages", params=params, headers=bearer(token))
    assert got.status_code == 200, got.text
    return list(got.json()["messages"])


async def test_regenerate_edit_switch_and_fork_over_rest(
    http: httpx2.AsyncClient, stack: ChatStack, token: str, dev_keys: DevKeys
) -> None:
    session = await new_session(http, token)
    for question, answer in (("Q1", "A1"), ("Q2", "A2")):
        stack.fake.enqueue(Script(text=answer))
        events = await sse(
            http, "POST", f"/v1/chat/{session}:streamChat", token, json={"text": question}
        )
    q2, a2 = (
        events[0].data["turnStarted"]["userMessage"],
        events[0].data["turnStarted"]["answerMessage"],
    )

    stack.fake.enqueue(Script(tokens=["A2 ", "again"]))
    again = await sse(http, "POST", path_of(a2) + ":regenerate", token, json={})
    assert again[0].kind == "turnStarted" and again[-1].kind == "turnEnded"
    assert again[0].data["turnStarted"]["userMessage"] == q2
    assert streamed_text(again) == "A2 again"
    assert [e.data["sequence"] for e in again] == [str(n) for n in range(1, len(again) + 1)]
    assert again[-1].data["turnEnded"]["outcome"] == "TURN_OUTCOME_COMPLETED"

    # The GET binding, as a browser's EventSource uses it (the token in the query).
    stack.fake.enqueue(Script(text="Q2 fixed answer"))
    async with http.stream(
        "GET", path_of(q2) + ":edit", params={"text": "Q2 fixed", "access_token": token}
    ) as response:
        assert response.status_code == 200
        edited = await read_sse(response)
    assert edited[-1].data["turnEnded"]["message"]["text"] == "Q2 fixed answer"

    path = await listed(http, session, token)
    assert [m["text"] for m in path] == ["Q1", "A1", "Q2 fixed", "Q2 fixed answer"]
    fixed = path[2]
    assert fixed["parent"] == path[1]["name"] and path[0]["parent"] == ""
    assert (fixed["siblingIndex"], fixed["siblingCount"]) == (1, 2)
    assert fixed["previousSibling"] == q2 and fixed["nextSibling"] == ""

    branch = await listed(http, session, token, branch=q2)
    assert [m["text"] for m in branch] == ["Q1", "A1", "Q2", "A2 again"]
    assert (branch[3]["siblingIndex"], branch[3]["siblingCount"]) == (1, 2)
    every = await listed(http, session, token, allBranches="true")
    assert len(every) == 7

    switched = await http.post(path_of(q2) + ":switchBranch", json={}, headers=bearer(token))
    assert switched.status_code == 200, switched.text
    assert switched.json()["activeMessage"] == branch[3]["name"]
    exact = await http.post(
        path_of(a2) + ":switchBranch", json={"exact": True}, headers=bearer(token)
    )
    assert exact.json()["activeMessage"] == a2
    assert [m["text"] for m in await listed(http, session, token)] == ["Q1", "A1", "Q2", "A2"]

    forked = await http.post(
        path_of(a2) + ":fork",
        json={"displayName": "Copy", "requestId": "f1"},
        headers=bearer(token),
    )
    assert forked.status_code == 200, forked.text
    fork = forked.json()
    assert fork["displayName"] == "Copy" and fork["messageCount"] == 4
    assert [m["text"] for m in await listed(http, fork["name"], token)] == ["Q1", "A1", "Q2", "A2"]

    # The JSON export carries the whole tree on request; the others refuse it.
    whole = await http.get(
        f"/v1/chat/{session}:export",
        params={"format": "EXPORT_FORMAT_JSON", "allBranches": "true"},
        headers=bearer(token),
    )
    doc = json.loads(whole.text)
    assert len(doc["messages"]) == 7 and doc["session"]["activeMessage"] == a2
    shown = await http.get(f"/v1/chat/{session}:export", headers=bearer(token))
    assert "A2" in shown.text and "A2 again" not in shown.text and "Q2 fixed" not in shown.text
    refused = await http.get(
        f"/v1/chat/{session}:export", params={"allBranches": "true"}, headers=bearer(token)
    )
    assert refused.status_code == 400 and reason(status_body(refused)) == "INVALID_BRANCH_SELECTION"

    # Another user's message or branch does not exist for them.
    stranger = bearer(make_token(dev_keys, "someone-else"))
    for response in (
        await http.post(path_of(a2) + ":switchBranch", json={}, headers=stranger),
        await http.post(path_of(a2) + ":fork", json={}, headers=stranger),
        await http.get(f"/v1/chat/{session}/messages", params={"branch": a2}, headers=stranger),
        await http.post(path_of(a2) + ":regenerate", json={}, headers=stranger),
    ):
        assert response.status_code == 404, response.text
        assert reason(status_body(response)) in ("SESSION_NOT_FOUND", "MESSAGE_NOT_FOUND")
