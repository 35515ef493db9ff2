"""Answers outlive the tab (issue 28, item 1): the page's turns are detached and it follows
them again when the person comes back (a reload, back to the chat, another tab); the
sidebar marks chats still answering; Stop cancels at once (CancelTurn); a resumed view
says how the turn ended, a crash of its replica included."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aichat.v1 import chat_service_pb2 as cpb
from google.protobuf import json_format
from playwright.async_api import BrowserContext, Page, Route, expect

from aichat_backend.api.turn_frames import interrupted_end
from aichat_devtools.fake_llm import Script
from tests.e2e.web.helpers import last_answer, rest, send, session_id, signed_in, wait_idle
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy
from tests.support.fault_proxy import FaultProxy

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(90)]

TOKENS = [f"t{i} " for i in range(70)]  # 3.5 s at 0.05 s a token


async def stored_answers(envoy: Envoy, token: str, session: str) -> list[dict[str, Any]]:
    listed = await rest(envoy, token, "GET", f"/v1/chat/sessions/{session}/messages")
    return [m for m in listed.json()["messages"] if m["role"] == "ROLE_ASSISTANT"]


async def shown_text(page: Page) -> str:
    text = await last_answer(page).evaluate("n => n.querySelector('.markdown').textContent")
    return str(text).strip()


async def test_a_reload_mid_answer_follows_it_to_its_end(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    page = await signed_in(desktop, envoy, token)
    stack.fake.enqueue(Script(tokens=TOKENS, token_delay=0.05))
    await send(page, "tell me something long")
    await expect(last_answer(page).locator(".markdown")).to_contain_text("t5")
    disconnects = stack.fake.stream_disconnects
    await page.reload()
    # The answer is still being written: the chat is marked, Stop is offered, the text grows.
    await expect(page.locator(".session-item.current.answering")).to_have_count(1)
    await expect(page.locator("#stop-button")).to_be_visible()
    await page.screenshot(path=str(artifacts / "desktop-reattached.png"))
    await wait_idle(page)
    # One question, one answer: nothing shown twice, nothing lost, nothing cut off.
    await expect(page.locator("article.message.user")).to_have_count(1)
    await expect(page.locator("article.message.assistant")).to_have_count(1)
    await expect(last_answer(page)).not_to_have_class(re.compile("incomplete"))
    answers = await stored_answers(envoy, token, await session_id(page))
    assert [a["state"] for a in answers] == ["MESSAGE_STATE_COMPLETE"]
    assert answers[0]["text"] == "".join(TOKENS)
    assert await shown_text(page) == answers[0]["text"].strip()
    assert stack.fake.stream_disconnects == disconnects  # the model call ran to its end
    await expect(page.locator(".session-item.answering")).to_have_count(0)
    assert page.errors == []  # type: ignore[attr-defined]


async def test_another_chat_then_back_and_another_tab(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str
) -> None:
    page = await signed_in(desktop, envoy, token)
    stack.fake.enqueue(Script(tokens=TOKENS, token_delay=0.05))
    await send(page, "a long answer please")
    first = await session_id(page)
    await expect(last_answer(page).locator(".markdown")).to_contain_text("t3")
    # Away to a new chat: the first one goes on, marked in the sidebar as answering.
    await page.get_by_role("button", name="+ New chat").click()
    await expect(page.locator("#chat-title")).to_have_text("New chat")
    item = page.locator(f'.session-item[data-session="{first}"]')
    await expect(item).to_have_class(re.compile("answering"))
    await expect(item).to_contain_text("answering…")

    # Another tab sees the running answer too.
    other = await signed_in(desktop, envoy, token, extra=f"&session={first}")
    await expect(other.locator("#stop-button")).to_be_visible()
    await expect(last_answer(other).locator(".markdown")).to_contain_text("t1")

    # Back to the first chat: the answer is followed again, to its end.
    await item.click()
    await wait_idle(page)
    await wait_idle(other)
    answers = await stored_answers(envoy, token, first)
    assert [a["state"] for a in answers] == ["MESSAGE_STATE_COMPLETE"]
    for tab in (page, other):
        await expect(tab.locator("article.message.assistant")).to_have_count(1)
        assert await shown_text(tab) == answers[0]["text"].strip()
    # When it has finished, the mark goes (the sidebar looked again by itself).
    await expect(item).not_to_have_class(re.compile("answering"), timeout=10_000)
    assert page.errors == [] and other.errors == []  # type: ignore[attr-defined]


async def test_stop_cancels_at_once_and_keeps_exactly_what_was_shown(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str
) -> None:
    page = await signed_in(desktop, envoy, token)
    stack.fake.enqueue(Script(tokens=[f"word{i} " for i in range(400)], token_delay=0.05))
    disconnects = stack.fake.stream_disconnects
    await send(page, "tell me a very long story")
    answer = last_answer(page)
    await expect(answer.locator(".markdown")).to_contain_text("word3")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if r.method == "POST" else None)
    await page.locator("#stop-button").click()
    await expect(answer.locator(".answer-status")).to_contain_text("Stopped")
    await wait_idle(page)
    assert any(url.endswith(":cancel") for url in requests), requests
    await stack.fake.wait_disconnect(within=5, count=disconnects + 1)
    await expect(answer).to_have_class(re.compile("incomplete"))
    answers = await stored_answers(envoy, token, await session_id(page))
    assert answers[-1]["state"] == "MESSAGE_STATE_INCOMPLETE"
    assert await shown_text(page) == answers[-1]["text"].strip()
    assert "word399" not in answers[-1]["text"]
    # Reopening shows the stored partial answer, marked as such.
    await page.reload()
    await expect(last_answer(page).locator(".answer-status")).to_contain_text("Incomplete")
    assert page.errors == []  # type: ignore[attr-defined]


async def test_a_resumed_view_says_the_replica_crashed(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    """What the page shows is what turn_ended says: here the turn_ended FAILED
    (TURN_INTERRUPTED) the recovery writes for a turn whose replica died, made by the
    server's own function and served to the page's resume as the transcoder would."""
    proxy = FaultProxy(upstream_port=envoy.port)
    await proxy.start()
    try:
        page = await desktop.new_page()
        await page.goto(f"http://127.0.0.1:{proxy.port}/web/#token={token}")
        await expect(page.locator("#app")).to_be_visible()
        stack.fake.enqueue(Script(tokens=[f"c{i} " for i in range(200)], token_delay=0.05))
        await send(page, "this replica will die")
        answer = last_answer(page)
        await expect(answer.locator(".markdown")).to_contain_text("c3")
        turn = ""

        async def crashed(route: Route) -> None:
            nonlocal turn
            turn = route.request.url.split("/v1/chat/", 1)[1].split(":streamEvents", 1)[0]
            end = cpb.StreamChatResponse.FromString(interrupted_end(None, turn, 100_000))
            body = json_format.MessageToDict(end, always_print_fields_with_no_presence=True)
            await route.fulfill(
                status=200,
                headers={"content-type": "text/event-stream"},
                body=f"data: {json.dumps(body)}\n\n",
            )

        await page.route(re.compile(r":streamEvents"), crashed)
        await proxy.set_mode("drop")
        status = answer.locator(".answer-status")
        await expect(status).to_contain_text("Interrupted: the server answering stopped")
        await wait_idle(page)
        await expect(answer).to_have_class(re.compile("incomplete"))
        await page.screenshot(path=str(artifacts / "desktop-interrupted.png"))
        await proxy.set_mode("pass")
        cancelled = await rest(envoy, token, "POST", f"/v1/chat/{turn}:cancel", json={})
        assert cancelled.status_code == 200, cancelled.text
    finally:
        await proxy.close()
