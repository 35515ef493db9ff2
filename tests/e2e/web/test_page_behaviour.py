"""The web chat's behaviour around the edges: stopping, thinking, attachments and their
limit, errors as toasts, the sessions list's pages, phone width."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, expect

from aichat_devtools.fake_llm import Script, last_user_text
from tests.e2e.web.conftest import MAX_ATTACHMENT_BYTES
from tests.e2e.web.helpers import (
    animations_at_their_faintest,
    axe_violations,
    last_answer,
    rest,
    send,
    signed_in,
    wait_idle,
)
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(60)]


async def test_stop_cancels_the_turn_and_keeps_the_partial_answer_as_incomplete(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str
) -> None:
    page = await signed_in(desktop, envoy, token)
    stack.fake.enqueue(Script(tokens=[f"word{i} " for i in range(400)], token_delay=0.05))
    disconnects = stack.fake.stream_disconnects
    await send(page, "tell me a long story")
    answer = last_answer(page)
    await expect(answer.locator(".markdown")).to_contain_text("word3")
    await page.locator("#stop-button").click()
    await wait_idle(page)
    await expect(answer).to_have_class(re.compile("incomplete"))
    await expect(answer.locator(".answer-status")).to_contain_text("Stopped")
    # The hang-up reached the model, and the server kept the partial answer as INCOMPLETE.
    await stack.fake.wait_disconnect(within=5, count=disconnects + 1)
    session_id = (await page.evaluate("location.hash")).split("session=", 1)[1]

    async def stored_state() -> str:
        listed = await rest(envoy, token, "GET", f"/v1/chat/sessions/{session_id}/messages")
        answers = [m for m in listed.json()["messages"] if m["role"] == "ROLE_ASSISTANT"]
        return answers[-1]["state"] if answers else ""

    # The server stores the partial answer as the cancelled turn winds down: a bounded
    # wait on that condition (over HTTP: nothing to subscribe to).
    async with asyncio.timeout(5):
        while (state := await stored_state()) != "MESSAGE_STATE_INCOMPLETE":  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert state == "MESSAGE_STATE_INCOMPLETE"
    # Reopening the chat shows the stored partial answer marked as incomplete.
    await page.reload()
    await expect(last_answer(page)).to_have_class(re.compile("incomplete"))
    await expect(last_answer(page).locator(".answer-status")).to_contain_text("Incomplete")


async def test_heartbeats_show_thinking(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    page = await signed_in(desktop, envoy, token)
    # Silent until the gate opens, while the server sends a heartbeat every 0.5 s (the
    # stack's setting).
    gate = asyncio.Event()
    stack.fake.enqueue(Script(text="finally an answer", gate_after=0, gate=gate))
    try:
        await send(page, "think hard")
        status = last_answer(page).locator(".answer-status")
        await expect(status).to_have_text(re.compile(r"thinking… \(\d+ s\)"))
        # The status pulses while it waits; its words stay readable at the faintest frame.
        assert await animations_at_their_faintest(page) >= 1
        await page.screenshot(path=str(artifacts / "desktop-heartbeat-thinking.png"))
        assert await axe_violations(page) == []
    finally:
        gate.set()  # a failure never leaves the turn held
    await wait_idle(page)
    await expect(last_answer(page).locator(".markdown")).to_have_text("finally an answer")
    await expect(status).to_be_hidden()


async def test_attachments_are_sent_and_the_limit_is_shown_before_upload(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str
) -> None:
    page = await signed_in(desktop, envoy, token)
    await expect(page.locator("#attach-limit")).to_contain_text("64 KiB")
    requests_before = len(stack.fake.requests)
    too_big = b"x" * (MAX_ATTACHMENT_BYTES + 1)
    await page.locator("#file-input").set_input_files(
        [{"name": "huge.txt", "mimeType": "text/plain", "buffer": too_big}]
    )
    await expect(page.locator(".toast-error")).to_contain_text("the limit is 64 KiB")
    await expect(page.locator("#attachment-list")).to_be_hidden()
    await page.locator("#file-input").set_input_files(
        [{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"the cellar key is blue"}]
    )
    await expect(page.locator("#attachment-list .chip")).to_contain_text("notes.txt")
    await send(page, "what colour is the key?")
    await wait_idle(page)
    await expect(page.locator("article.message.user .chip")).to_contain_text("notes.txt")
    # Nothing was uploaded for the refused file; the accepted one reached the model.
    sent = stack.fake.requests[requests_before:]
    assert len(sent) == 1
    assert "the cellar key is blue" in str(sent[0].body)
    assert last_user_text(sent[0].body).startswith("what colour")


async def test_a_refused_message_says_the_servers_message_where_it_was_written(
    desktop: BrowserContext, envoy: Envoy, token: str
) -> None:
    page = await signed_in(desktop, envoy, token)
    await send(page, "hello")
    await wait_idle(page)
    session_id = (await page.evaluate("location.hash")).split("session=", 1)[1]
    # The chat disappears behind the page's back; the next message meets the server's 404.
    await rest(envoy, token, "DELETE", f"/v1/chat/sessions/{session_id}")
    expected = (await rest(envoy, token, "GET", f"/v1/chat/sessions/{session_id}")).json()
    await send(page, "are you there?")
    note = page.locator("article.message.user").last.locator(".not-sent-note")
    await expect(note).to_contain_text(expected["message"].rstrip("."))
    await expect(note).to_contain_text("SESSION_NOT_FOUND")
    # Said there, not also in a toast that would cover it.
    await expect(page.locator(".toast")).to_have_count(0)
    assert await page.locator("dialog[open]").count() == 0


async def test_the_sessions_list_loads_page_after_page(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, user: str
) -> None:
    for i in range(35):
        await stack.new_session(user, display_name=f"chat {i:02d}")
    page = await signed_in(desktop, envoy, token)
    items = page.locator(".session-item")
    await expect(items).to_have_count(30)  # the first page
    await page.locator("#more-sessions").scroll_into_view_if_needed()
    await expect(items).to_have_count(35)
    await expect(page.locator("#more-sessions")).to_be_hidden()
    await items.filter(has_text="chat 00").click()
    await expect(page.locator(".session-item.current")).to_contain_text("chat 00")
    await expect(page.locator("#chat-title")).to_have_text("chat 00")


async def test_phone_width(
    phone: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    page = await signed_in(phone, envoy, token)
    await expect(page.locator("#sidebar")).not_to_be_in_viewport()
    recipe = (
        "Sure:\n\n1. **Preheat** the oven\n2. Mix `flour` and water\n\n"
        "| step | min |\n|---|---|\n| bake | 30 |"
    )
    stack.fake.enqueue(Script(text=recipe))
    await send(page, "How do I bake bread?")
    await wait_idle(page)
    await send(page, "calculate 30*2")
    await wait_idle(page)
    await expect(last_answer(page).locator(".markdown")).to_contain_text("60")
    # Nothing sticks out sideways at phone width.
    overflow = await page.evaluate("document.documentElement.scrollWidth - innerWidth")
    assert overflow <= 0
    await page.screenshot(path=str(artifacts / "phone.png"))
    await page.locator("#toggle-sidebar").click()
    await expect(page.locator("#sidebar")).to_be_in_viewport()
    await expect(page.locator(".session-item.current")).to_contain_text("How do I bake bread?")
    await page.screenshot(path=str(artifacts / "phone-sidebar.png"))
    await page.locator(".session-item.current").click()
    await expect(page.locator("#sidebar")).not_to_be_in_viewport()


async def test_a_pending_approval_survives_a_reload_and_can_be_denied(
    desktop: BrowserContext, envoy: Envoy, token: str
) -> None:
    page = await signed_in(desktop, envoy, token)
    await send(page, "add task sell the car")
    await expect(page.locator(".approval-card")).to_be_visible()
    await wait_idle(page)
    await page.reload()
    card = page.locator(".approval-card")
    await expect(card.locator(".approval-args")).to_contain_text("sell the car")
    await card.get_by_role("button", name="Deny").click()
    await expect(card).to_have_attribute("data-decision", "denied")
    await wait_idle(page)
    answer = last_answer(page)
    await expect(answer.locator(".tool-call .tool-state")).to_have_text("denied")
    await expect(answer.locator(".markdown")).not_to_be_empty()
