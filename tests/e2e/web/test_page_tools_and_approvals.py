"""Defects of issue 28 about tools, shown in the real browser: unticking every tool gave
the chat every tool; an approval card stayed live after the turn had moved on."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, expect

from aichat_devtools.fake_llm import Script
from tests.e2e.web.helpers import last_answer, rest, send, session_id, signed_in, wait_idle
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(60)]


async def test_unticking_every_tool_gives_the_chat_no_tool(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    page = await signed_in(desktop, envoy, token)
    await page.locator("#tools-button").click()
    boxes = page.locator("#tools-panel input[type=checkbox]")
    for i in range(await boxes.count()):
        await boxes.nth(i).uncheck()
    await expect(page.locator("#tools-button")).to_contain_text("Tools: none")
    await page.screenshot(path=str(artifacts / "desktop-tools-none.png"))
    await page.locator("#tools-button").click()
    requests = len(stack.fake.requests)
    await send(page, "calculate 6*7")
    await wait_idle(page)
    # The model was offered nothing, so nothing ran.
    assert "tools" not in stack.fake.requests[requests].body
    await expect(last_answer(page).locator(".tool-call")).to_have_count(0)
    stored = await rest(envoy, token, "GET", f"/v1/chat/sessions/{await session_id(page)}")
    assert stored.json()["toolsDisabled"] is True and stored.json()["toolNames"] == []
    # A reload shows the same: none, and locked.
    await page.reload()
    await expect(page.locator("#tools-button")).to_contain_text("Tools: none")
    await expect(page.locator("#tools-button")).to_have_attribute("data-locked", "true")


async def test_an_approval_card_stops_offering_a_choice_once_the_turn_moved_on(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    page = await signed_in(desktop, envoy, token)
    await send(page, "add task walk the dog")
    card = page.locator(".approval-card")
    await expect(card.get_by_role("button", name="Approve")).to_be_visible()
    await wait_idle(page)
    # Instead of deciding, a new message: the server declines the waiting call.
    stack.fake.enqueue(Script(text="Fine, forget the dog."))
    await send(page, "never mind")
    await wait_idle(page)
    await expect(card.get_by_role("button", name="Approve")).to_have_count(0)
    await expect(card.get_by_role("button", name="Deny")).to_have_count(0)
    await expect(card.locator(".approval-verdict")).to_contain_text("Declined")
    await expect(card).to_have_attribute("data-decision", "denied")
    # The call's row in its own answer says so too; the new answer has no stray row.
    first = page.locator("article.message.assistant").first
    await expect(first.locator(".tool-call .tool-state")).to_have_text("denied")
    await expect(first.locator(".answer-status")).not_to_contain_text("Waiting")
    await expect(last_answer(page).locator(".tool-call")).to_have_count(0)
    await expect(page.get_by_text("Not sent")).to_have_count(0)
    await page.screenshot(path=str(artifacts / "desktop-approval-declined.png"))


async def test_a_card_decided_elsewhere_says_so_instead_of_approved_and_not_sent(
    desktop: BrowserContext, envoy: Envoy, token: str
) -> None:
    page = await signed_in(desktop, envoy, token)
    await send(page, "add task feed the cat")
    card = page.locator(".approval-card")
    await expect(card).to_be_visible()
    await wait_idle(page)
    # Another tab (here: the API) denies it first.
    call = await card.get_attribute("data-tool-call")
    session = await session_id(page)
    decided = await rest(
        envoy,
        token,
        "POST",
        f"/v1/chat/sessions/{session}:resolveToolCalls",
        json={"decisions": [{"toolCallId": call, "approved": False}]},
    )
    assert decided.status_code == 200, decided.text
    await card.get_by_role("button", name="Approve").click()
    verdict = card.locator(".approval-verdict")
    await expect(verdict).to_contain_text("TOOL_CALL_")
    await expect(verdict).not_to_contain_text("Approved")
    await expect(card.get_by_role("button", name="Approve")).to_have_count(0)
    await wait_idle(page)
