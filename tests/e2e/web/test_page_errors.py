"""Defects of issue 28 around errors and signing in, each shown in the real browser:
toasts that covered the composer and stacked; the backend down (Envoy's raw text, the
typed message lost, a failed open dropping you on New chat); sign-in (a pasted link,
a "Jwt is missing" toast, no favicon)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx2
import pytest
from playwright.async_api import BrowserContext, Page, expect

from aichat_devtools.fake_llm import Script
from tests.e2e.web.conftest import MAX_ATTACHMENT_BYTES, FlakyBackend
from tests.e2e.web.helpers import last_answer, rest, send, session_id, signed_in, wait_idle
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy
from tests.support.http import TLS

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(90)]

RAW_ENVOY = re.compile(r"upstream|reset reason|connect error|no healthy", re.IGNORECASE)


async def back_up(flaky: FlakyBackend, token: str) -> None:
    """The link is restored and a call through this Envoy reaches the backend again."""
    await flaky.link.set_mode("pass")
    await flaky.envoy.wait_backend(healthy=True)
    async with asyncio.timeout(10):
        while (await rest(flaky.envoy, token, "GET", "/v1/chat/models")).status_code != 200:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # over HTTP: nothing to subscribe to


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


async def many_errors(page: Page) -> None:
    """Four different errors, then one of them three times more (files over the limit)."""
    too_big = b"x" * (MAX_ATTACHMENT_BYTES + 1)
    for name in ("a.txt", "b.txt", "c.txt", "d.txt", "d.txt", "d.txt", "d.txt"):
        await page.locator("#file-input").set_input_files(
            [{"name": name, "mimeType": "text/plain", "buffer": too_big}]
        )


@pytest.mark.parametrize("width", ["desktop", "phone"])
async def test_toasts_never_cover_the_composer_and_do_not_pile_up(
    width: str,
    desktop: BrowserContext,
    phone: BrowserContext,
    envoy: Envoy,
    token: str,
    artifacts: Path,
) -> None:
    page = await signed_in(desktop if width == "desktop" else phone, envoy, token)
    await many_errors(page)
    toasts = page.locator(".toast")
    await expect(toasts.last).to_contain_text("d.txt")
    # At most two at once; the same message again is counted, not stacked.
    assert await toasts.count() <= 2
    await expect(toasts.filter(has_text="d.txt")).to_have_count(1)
    # "(x4)" with a multiplication sign
    await expect(toasts.filter(has_text="d.txt")).to_contain_text("\u00d74")
    composer = await page.locator("#composer").bounding_box()
    send_button = await page.locator("#send-button").bounding_box()
    header = await page.locator(".chat-header").bounding_box()
    assert composer and send_button and header
    for i in range(await toasts.count()):
        box = await toasts.nth(i).bounding_box()
        assert box is not None
        assert not overlap(box, composer), (box, composer)
        assert not overlap(box, send_button)
        assert not overlap(box, header)
    await page.screenshot(path=str(artifacts / f"{width}-toasts.png"))
    # The message box can still be typed in and sent from while they show.
    await page.locator("#message-input").click()
    await page.locator("#message-input").fill("still works")
    await expect(page.locator("#send-button")).to_be_enabled()


async def test_backend_down_a_message_is_kept_with_retry_and_envoys_words_never_show(
    desktop: BrowserContext, flaky: FlakyBackend, stack: ChatStack, token: str, artifacts: Path
) -> None:
    page = await signed_in(desktop, flaky.envoy, token)
    # The list read while up (an item alone may be the empty list's line drawn before it).
    await expect(page.locator('#session-list[aria-busy="false"]')).to_be_attached()
    await flaky.link.set_mode("refuse")
    try:
        await send(page, "are you there?")
        bubble = page.locator("article.message.user").last
        await expect(bubble).to_contain_text("Not sent")
        await expect(bubble).to_contain_text("not reachable")
        retry = bubble.get_by_role("button", name="Retry")
        await expect(retry).to_be_visible()
        # Said on the message, not in a toast that would cover its Retry.
        toasts = page.locator(".toast")
        try:
            await expect(toasts).to_have_count(0)
        except AssertionError:
            raise AssertionError(f"toasts shown: {await toasts.all_inner_texts()}") from None
        # Envoy's own words are for its log, never for the person.
        assert not RAW_ENVOY.search(await page.locator("body").inner_text())
        await page.screenshot(path=str(artifacts / "desktop-not-sent.png"))
    finally:
        await back_up(flaky, token)
    stack.fake.enqueue(Script(text="Yes, here."))
    await retry.click()
    await wait_idle(page)
    await expect(last_answer(page).locator(".markdown")).to_have_text("Yes, here.")
    # Sent once: the retry reused the message's request ids.
    listed = await rest(
        flaky.envoy, token, "GET", f"/v1/chat/sessions/{await session_id(page)}/messages"
    )
    users = [m["text"] for m in listed.json()["messages"] if m["role"] == "ROLE_USER"]
    assert users == ["are you there?"]
    await expect(page.locator("article.message.user")).to_have_count(1)
    assert page.errors == []  # type: ignore[attr-defined]


async def test_backend_down_opening_a_chat_says_so_and_retries_in_place(
    desktop: BrowserContext,
    flaky: FlakyBackend,
    stack: ChatStack,
    token: str,
    user: str,
    artifacts: Path,
) -> None:
    session = await stack.new_session(user, display_name="Kept chat")
    chat_id = session.split("/", 1)[1]
    page = await signed_in(desktop, flaky.envoy, token)
    item = page.locator(f'.session-item[data-session="{chat_id}"]')
    await expect(item).to_be_visible()  # listed while the backend was up
    await flaky.link.set_mode("refuse")
    try:
        await item.click()
        failed = page.locator(".open-failed")
        await expect(failed).to_contain_text("could not be opened")
        await expect(failed).to_contain_text("not reachable")
        # Not dropped on an empty New chat: the address still names the chat.
        await expect(page.locator("#chat-title")).not_to_have_text("New chat")
        assert await session_id(page) == chat_id
        assert not RAW_ENVOY.search(await page.locator("body").inner_text())
        await page.screenshot(path=str(artifacts / "desktop-open-failed.png"))
    finally:
        await back_up(flaky, token)
    await failed.get_by_role("button", name="Retry").click()
    await expect(page.locator("#chat-title")).to_have_text("Kept chat")


async def test_backend_down_at_start_offers_try_again(
    desktop: BrowserContext, flaky: FlakyBackend, token: str, artifacts: Path
) -> None:
    await flaky.link.set_mode("refuse")
    try:
        page = await desktop.new_page()
        await page.goto(f"{flaky.envoy.base_url}/web/#token={token}")
        await expect(page.locator("#signin-title")).to_have_text(
            "The chat service is not reachable"
        )
        assert not RAW_ENVOY.search(await page.locator("body").inner_text())
        await expect(page.get_by_role("button", name="Try again")).to_be_visible()
        await page.screenshot(path=str(artifacts / "desktop-unreachable.png"))
    finally:
        await back_up(flaky, token)
    await page.get_by_role("button", name="Try again").click()
    await expect(page.locator("#app")).to_be_visible()


async def test_a_sign_in_link_pasted_into_the_signed_out_tab_signs_in(
    desktop: BrowserContext, envoy: Envoy, token: str, artifacts: Path
) -> None:
    page = await desktop.new_page()
    await page.goto(f"{envoy.base_url}/web/")
    await expect(page.locator("#signin")).to_be_visible()
    # Nothing but the sign-in card: no toast about the missing token beside it.
    await expect(page.locator(".toast")).to_have_count(0)
    assert "Jwt" not in await page.locator("body").inner_text()
    await page.screenshot(path=str(artifacts / "desktop-signin.png"))
    # The same page's link with a token, pasted into the address bar: only the
    # fragment changes, so the browser does not load the page again.
    await page.evaluate("t => { location.hash = '#token=' + t; }", token)
    await expect(page.locator("#app")).to_be_visible()
    assert token not in page.url
    assert await page.evaluate("sessionStorage.getItem('aichat.token')") == token


async def test_the_page_has_a_favicon(desktop: BrowserContext, envoy: Envoy) -> None:
    page = await desktop.new_page()
    await page.goto(f"{envoy.base_url}/web/")
    href = await page.locator('link[rel="icon"]').get_attribute("href")
    assert href
    async with httpx2.AsyncClient(verify=TLS, base_url=envoy.base_url, timeout=10) as client:
        icon = await client.get(href)
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert icon.text.startswith("<svg")
