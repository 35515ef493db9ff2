"""Thumbs on answers (SetMessageFeedback) and a dropped stream resumed in place
(StreamTurnEvents), in the real browser against the real stack."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, Request, expect

from aichat_devtools.dev_token import DevKeys, make_token
from aichat_devtools.fake_llm import Script
from tests.e2e.web.helpers import last_answer, rest, send, session_id, signed_in, wait_idle
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy
from tests.support.fault_proxy import FaultProxy

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(60)]

UP = "FEEDBACK_RATING_THUMBS_UP"
DOWN = "FEEDBACK_RATING_THUMBS_DOWN"
NONE = "FEEDBACK_RATING_UNSPECIFIED"


async def stored_answer(envoy: Envoy, token: str, session: str) -> dict[str, Any]:
    listed = await rest(envoy, token, "GET", f"/v1/chat/sessions/{session}/messages")
    assert listed.status_code == 200, listed.text
    answers = [m for m in listed.json()["messages"] if m["role"] == "ROLE_ASSISTANT"]
    return dict(answers[-1])


async def expect_rating(page: Page, rating: str) -> None:
    """The page shows ``rating`` as the answer's (what the server answered: see feedback.js)."""
    group = last_answer(page).locator(".feedback")
    await expect(group).to_have_attribute("data-rating", rating)
    await expect(group).not_to_have_attribute("data-saving", "true")
    up, down = group.locator(f'[data-rating="{UP}"]'), group.locator(f'[data-rating="{DOWN}"]')
    await expect(up).to_have_attribute("aria-pressed", str(rating == UP).lower())
    await expect(down).to_have_attribute("aria-pressed", str(rating == DOWN).lower())


async def test_thumbs_up_down_comment_and_clear_persist_and_only_the_owner_rates(
    desktop: BrowserContext,
    envoy: Envoy,
    stack: ChatStack,
    token: str,
    dev_keys: DevKeys,
    artifacts: Path,
) -> None:
    page = await signed_in(desktop, envoy, token)
    stack.fake.enqueue(Script(text="Paris is the capital of France."))
    await send(page, "capital of France?")
    await wait_idle(page)
    session = await session_id(page)
    group = last_answer(page).locator(".feedback")
    await expect_rating(page, NONE)
    assert "feedback" not in await stored_answer(envoy, token, session)

    await group.get_by_role("button", name="Good answer").click()
    await expect_rating(page, UP)
    assert (await stored_answer(envoy, token, session))["feedback"]["rating"] == UP
    await page.screenshot(path=str(artifacts / "desktop-feedback.png"))

    # Changed: down replaces up; then a comment goes with it.
    await group.get_by_role("button", name="Bad answer").click()
    await expect_rating(page, DOWN)
    await group.get_by_role("button", name="Add a comment").click()
    await page.locator("#prompt-input").fill("It left out the population")
    await page.locator("#prompt-dialog").get_by_role("button", name="Save").click()
    await expect(group.get_by_role("button", name="Edit comment")).to_be_visible()
    stored = (await stored_answer(envoy, token, session))["feedback"]
    assert (stored["rating"], stored["comment"]) == (DOWN, "It left out the population")

    # Another user cannot rate (nor learn that) this answer: NOT_FOUND, and nothing changed.
    mallory = make_token(dev_keys, "mallory-" + token[-8:])
    answer_name = (await stored_answer(envoy, token, session))["name"]
    refused = await rest(
        envoy, mallory, "POST", f"/v1/chat/{answer_name}:setFeedback", json={"rating": UP}
    )
    assert refused.status_code == 404, refused.text
    assert (await stored_answer(envoy, token, session))["feedback"]["rating"] == DOWN

    # A reload shows the stored rating (from Message.feedback in ListMessages).
    await page.reload()
    await expect_rating(page, DOWN)
    await expect(group.get_by_role("button", name="Edit comment")).to_have_attribute(
        "title", "It left out the population"
    )
    # Clicking the active thumb clears it, and the clearing persists too.
    await group.get_by_role("button", name="Bad answer").click()
    await expect_rating(page, NONE)
    await expect(group.locator(".feedback-comment")).to_be_hidden()
    assert "feedback" not in await stored_answer(envoy, token, session)
    await page.reload()
    await expect_rating(page, NONE)
    assert page.errors == []  # type: ignore[attr-defined]


async def opened_through(proxy: FaultProxy, context: BrowserContext, token: str) -> Page:
    """The page reached through a proxy the test can cut, as a network would be."""
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto(f"http://127.0.0.1:{proxy.port}/web/#token={token}")
    await expect(page.locator("#app")).to_be_visible()
    return page


async def test_a_dropped_stream_resumes_in_place_with_nothing_doubled(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    proxy = FaultProxy(upstream_port=envoy.port)
    await proxy.start()
    try:
        page = await opened_through(proxy, desktop, token)
        resumes: list[Request] = []
        page.on("request", lambda r: resumes.append(r) if ":streamEvents" in r.url else None)
        tokens = [f"w{i} " for i in range(80)]
        stack.fake.enqueue(Script(tokens=tokens, token_delay=0.05))
        await send(page, "a long one please")
        answer = last_answer(page)
        await expect(answer.locator(".markdown")).to_contain_text("w5")
        await proxy.set_mode("drop")
        status = answer.locator(".answer-status")
        await expect(status).to_contain_text("reconnecting")
        await proxy.set_mode("pass")
        await wait_idle(page)
        # The page's turns are detached: the cut did not stop the answer, which the page
        # followed again and shows whole, exactly once.
        await expect(answer).not_to_have_class(re.compile("incomplete"))
        session = await session_id(page)
        stored = await stored_answer(envoy, token, session)
        assert stored["state"] == "MESSAGE_STATE_COMPLETE"
        assert stored["text"] == "".join(tokens)
        shown = await answer.evaluate("n => n.querySelector('.markdown').textContent")
        assert shown.strip() == stored["text"].strip()
        await desktop.grant_permissions(["clipboard-read", "clipboard-write"])
        await answer.get_by_role("button", name="Copy", exact=True).click()
        await expect(answer.get_by_role("button", name="Copied")).to_be_visible()
        assert await page.evaluate("navigator.clipboard.readText()") == stored["text"]

        # Resumed by fetch with the token in the Authorization header, not the URL.
        assert resumes, "the page never asked for the rest of the turn"
        last = resumes[-1]
        assert "access_token" not in last.url and "token=" not in last.url
        assert re.search(r"afterSeq=[1-9]\d*", last.url)
        assert (await last.all_headers())["authorization"] == f"Bearer {token}"
        await answer.get_by_role("button", name="Bad answer").click()
        await expect_rating(page, DOWN)
        assert (await stored_answer(envoy, token, session))["feedback"]["rating"] == DOWN
        await page.screenshot(path=str(artifacts / "desktop-resumed.png"))
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        await proxy.close()


async def test_a_stream_that_cannot_be_resumed_offers_retry_after_bounded_tries(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    proxy = FaultProxy(upstream_port=envoy.port)
    await proxy.start()
    try:
        page = await opened_through(proxy, desktop, token)
        tries: list[str] = []
        page.on("request", lambda r: tries.append(r.url) if ":streamEvents" in r.url else None)
        tokens = [f"v{i} " for i in range(60)]
        stack.fake.enqueue(Script(tokens=tokens, token_delay=0.05))
        await send(page, "another long one")
        answer = last_answer(page)
        await expect(answer.locator(".markdown")).to_contain_text("v3")
        await proxy.set_mode("drop")  # and it stays down
        status = answer.locator(".answer-status")
        await expect(status).to_contain_text("reconnecting failed", timeout=15_000)
        retry = status.get_by_role("button", name="Retry")
        await expect(retry).to_be_visible()
        await expect(answer).to_have_class(re.compile("incomplete"))
        await wait_idle(page)
        assert len(tries) == 5  # bounded: RESUME_DELAYS_MS in turn.js
        await page.screenshot(path=str(artifacts / "desktop-reconnect-failed.png"))
        # The network is back: Retry follows the answer to its end, nothing doubled.
        await proxy.set_mode("pass")
        await retry.click()
        await wait_idle(page)
        await expect(answer).not_to_have_class(re.compile("incomplete"))
        stored = await stored_answer(envoy, token, await session_id(page))
        assert stored["text"] == "".join(tokens)
        shown = await answer.evaluate("n => n.querySelector('.markdown').textContent")
        assert shown.strip() == stored["text"].strip()
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        await proxy.close()


async def test_stop_while_reconnecting_is_sent_when_the_connection_is_back(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str
) -> None:
    proxy = FaultProxy(upstream_port=envoy.port)
    await proxy.start()
    try:
        page = await opened_through(proxy, desktop, token)
        stack.fake.enqueue(Script(tokens=[f"s{i} " for i in range(400)], token_delay=0.05))
        await send(page, "one more long one")
        answer = last_answer(page)
        await expect(answer.locator(".markdown")).to_contain_text("s3")
        await proxy.set_mode("drop")
        status = answer.locator(".answer-status")
        # A retry is under way (on a loaded machine a check may only see the third or fourth).
        await expect(status).to_contain_text(re.compile(r"reconnecting \(try [2-4] of 5\)"))
        await page.locator("#stop-button").click()
        await expect(status).to_contain_text("Stop is sent when it is back")
        disconnects = stack.fake.stream_disconnects
        await proxy.set_mode("pass")
        await expect(status).to_contain_text("Stopped")
        await wait_idle(page)
        await stack.fake.wait_disconnect(within=5, count=disconnects + 1)
        stored = await stored_answer(envoy, token, await session_id(page))
        assert stored["state"] == "MESSAGE_STATE_INCOMPLETE"
        shown = await answer.evaluate("n => n.querySelector('.markdown').textContent")
        assert shown.strip() == stored["text"].strip()
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        await proxy.close()
