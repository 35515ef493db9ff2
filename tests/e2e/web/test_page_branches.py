"""Issue 25, item 6, in the real browser: the conversation tree. Regenerate an answer,
edit your own message, step between versions ("< 1 / 2 >", SwitchBranch), fork into a
new chat; a reload shows the path chosen last."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, expect

from aichat_devtools.fake_llm import Script
from tests.e2e.web.helpers import (
    axe_violations,
    last_answer,
    rest,
    send,
    session_id,
    signed_in,
    wait_idle,
)
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(90)]


def user_texts(request: Any) -> list[str]:
    """The user messages a model request carried (OpenAI wire)."""
    return [
        str(m["content"]) if isinstance(m["content"], str) else str(m["content"][0]["text"])
        for m in request.body["messages"]
        if m["role"] == "user"
    ]


async def versions(page: Page, which: Any) -> str:
    return str(await which.locator(".sibling-position").text_content())


async def test_regenerate_edit_switch_and_fork(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    page = await signed_in(desktop, envoy, token)
    stack.fake.enqueue(Script(text="Answer one."))
    await send(page, "first question")
    await wait_idle(page)
    session = await session_id(page)
    answer = last_answer(page)
    await expect(answer.locator(".markdown")).to_have_text("Answer one.")
    await expect(answer.locator(".siblings")).to_have_count(0)  # one version: no arrows

    # Regenerate: a second answer to the same question, in place of the first.
    stack.fake.enqueue(Script(text="Answer two.", token_delay=0.01))
    await answer.get_by_role("button", name="Regenerate").click()
    await wait_idle(page)
    answer = last_answer(page)
    await expect(answer.locator(".markdown")).to_have_text("Answer two.")
    await expect(answer.locator(".sibling-position")).to_have_text("2 / 2")
    await expect(page.locator("article.message")).to_have_count(2)
    assert user_texts(stack.fake.requests[-1]) == ["first question"]
    await page.screenshot(path=str(artifacts / "desktop-branches-regenerated.png"))

    # "Previous version": the first answer again, and the active path (a reload agrees).
    await answer.get_by_role("button", name="Previous version").click()
    await expect(last_answer(page).locator(".markdown")).to_have_text("Answer one.")
    await expect(last_answer(page).locator(".sibling-position")).to_have_text("1 / 2")
    await expect(last_answer(page).get_by_role("button", name="Previous version")).to_be_disabled()
    # The keyboard stays on the versions: at the first, the other arrow has the focus.
    await expect(last_answer(page).get_by_role("button", name="Next version")).to_be_focused()
    await page.reload()
    await expect(last_answer(page).locator(".markdown")).to_have_text("Answer one.")
    await expect(last_answer(page).locator(".sibling-position")).to_have_text("1 / 2")

    # Edit the question: a new version of it with its own answer; the model sees only it.
    question = page.locator("article.message.user").first
    await question.get_by_role("button", name="Edit").click()
    box = question.get_by_role("textbox", name="Edit your message")
    await expect(box).to_have_value("first question")
    await page.screenshot(path=str(artifacts / "desktop-branches-editing.png"))
    stack.fake.enqueue(Script(text="Answer three."))
    await box.fill("second question")
    await box.press("Enter")
    await wait_idle(page)
    question = page.locator("article.message.user").first
    await expect(question.locator(".user-text")).to_have_text("second question")
    await expect(question.locator(".sibling-position")).to_have_text("2 / 2")
    await expect(last_answer(page).locator(".markdown")).to_have_text("Answer three.")
    assert user_texts(stack.fake.requests[-1]) == ["second question"]
    await page.screenshot(path=str(artifacts / "desktop-branches-edited.png"))
    assert await axe_violations(page) == []

    # "Previous version" on the question: the first version, with the answers it had.
    await question.get_by_role("button", name="Previous version").click()
    question = page.locator("article.message.user").first
    await expect(question.locator(".user-text")).to_have_text("first question")
    await expect(question.locator(".sibling-position")).to_have_text("1 / 2")
    await expect(last_answer(page).locator(".sibling-position")).to_contain_text("/ 2")
    listed = await rest(envoy, token, "GET", f"/v1/chat/sessions/{session}/messages")
    texts = [m.get("text", "") for m in listed.json()["messages"]]
    assert texts[0] == "first question" and "second question" not in texts

    # Fork from the answer shown: a new chat with that path, the original untouched.
    shown = str(await last_answer(page).locator(".markdown").text_content())
    await last_answer(page).get_by_role("button", name="Fork into a new chat").click()
    await page.wait_for_function(f"() => !location.hash.includes('session={session}')")
    forked = await session_id(page)
    assert forked != session
    await expect(page.locator("#chat-title")).to_contain_text("(fork)")
    await expect(page.locator("article.message.user .user-text")).to_have_text(["first question"])
    await expect(last_answer(page).locator(".markdown")).to_have_text(shown)
    await expect(page.locator(".session-item.current")).to_contain_text("(fork)")
    await page.screenshot(path=str(artifacts / "desktop-branches-forked.png"))
    # The fork goes on on its own: a new message there reaches the model after the copy.
    stack.fake.enqueue(Script(text="Forked answer."))
    await send(page, "and then?")
    await wait_idle(page)
    assert user_texts(stack.fake.requests[-1]) == ["first question", "and then?"]
    assert page.errors == []  # type: ignore[attr-defined]


async def test_edit_cancel_and_one_turn_at_a_time(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str
) -> None:
    page = await signed_in(desktop, envoy, token)
    stack.fake.enqueue(Script(text="Fine."))
    await send(page, "keep me")
    await wait_idle(page)
    question = page.locator("article.message.user").first
    requests = len(stack.fake.requests)
    await question.get_by_role("button", name="Edit").click()
    box = question.get_by_role("textbox", name="Edit your message")
    await box.fill("changed my mind")
    await box.press("Escape")  # cancelled: nothing sent, the text as it was
    await expect(box).to_have_count(0)
    await expect(question.locator(".user-text")).to_have_text("keep me")
    await expect(question.get_by_role("button", name="Edit")).to_be_focused()
    assert len(stack.fake.requests) == requests

    # While an answer is written, Regenerate waits its turn (said, not sent).
    gate = asyncio.Event()
    stack.fake.enqueue(Script(text="slow answer here", gate_after=1, gate=gate))
    await send(page, "slow one")
    await expect(page.locator("#stop-button")).to_be_visible()
    await (
        page.locator("article.message.assistant")
        .first.get_by_role("button", name="Regenerate")
        .click()
    )
    await expect(page.locator(".toast")).to_contain_text("Wait until the answer has finished")
    gate.set()
    await wait_idle(page)
    assert len(stack.fake.requests) == requests + 1


async def test_versions_at_phone_width(
    phone: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    page = await signed_in(phone, envoy, token)
    stack.fake.enqueue(Script(text="One way."))
    await send(page, "a question with two answers")
    await wait_idle(page)
    stack.fake.enqueue(Script(text="Another way."))
    await last_answer(page).get_by_role("button", name="Regenerate").click()
    await wait_idle(page)
    await expect(last_answer(page).locator(".sibling-position")).to_have_text("2 / 2")
    for name in ("Previous version", "Next version", "Regenerate", "Fork into a new chat"):
        box = await last_answer(page).get_by_role("button", name=name).bounding_box()
        assert box is not None and box["width"] >= 44 and box["height"] >= 44, name
    edit = (
        await page.locator("article.message.user").get_by_role("button", name="Edit").bounding_box()
    )
    assert edit is not None and edit["width"] >= 44 and edit["height"] >= 44
    await page.screenshot(path=str(artifacts / "phone-branches.png"))
    assert await axe_violations(page) == []
