"""Accessibility (issue 28, item 3): axe-core, from npm, run in the page in every state
the browser tests show; no serious or critical violation in any (it found the contrast
of white on the accent colour, 4.06:1, and a sign-in card outside any landmark)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, expect

from aichat_devtools.fake_llm import Script
from tests.e2e.web.helpers import axe_violations, send, signed_in, wait_idle
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(90)]

ANSWER = (
    "Steps:\n\n1. **Mix** `flour`\n2. Bake\n\n"
    "```python\ndef bake(minutes):\n    return minutes\n```\n\n"
    "> Patience.\n\n| step | min |\n|---|---|\n| bake | 30 |\n\nSee [the recipe](https://example.com)."
)


async def clean(page: Page, state: str) -> None:
    found = await axe_violations(page)
    assert found == [], f"{state}: {found}"


async def test_no_serious_violation_at_desktop_width(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str
) -> None:
    page = await desktop.new_page()
    await page.goto(f"{envoy.base_url}/web/")
    await expect(page.locator("#signin")).to_be_visible()
    await clean(page, "sign-in")

    page = await signed_in(desktop, envoy, token)
    await clean(page, "new chat")
    stack.fake.enqueue(Script(text=ANSWER))
    await send(page, "how do I bake?")
    await wait_idle(page)
    await expect(page.locator(".hljs-keyword").first).to_be_visible()
    await clean(page, "chat with an answer")
    await send(page, "add task buy flour")
    await expect(page.locator(".approval-card")).to_be_visible()
    await wait_idle(page)
    await clean(page, "approval card")
    await page.locator("#tools-button").click()
    await clean(page, "tools panel")
    await page.locator("#tools-button").click()
    await page.get_by_role("button", name="Chat actions").click()
    await clean(page, "chat actions menu")
    await page.keyboard.press("Escape")
    await page.get_by_role("button", name="Deny").click()
    await wait_idle(page)
    await clean(page, "approval denied")


async def test_no_serious_violation_at_phone_width(
    phone: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    page = await phone.new_page()
    await page.goto(f"{envoy.base_url}/web/")
    await expect(page.locator("#signin")).to_be_visible()
    await clean(page, "phone sign-in")
    await page.screenshot(path=str(artifacts / "phone-signin.png"))
    page = await signed_in(phone, envoy, token)
    stack.fake.enqueue(Script(text=ANSWER))
    await send(page, "how do I bake?")
    await wait_idle(page)
    await clean(page, "phone chat")
    await send(page, "add task buy sugar")
    await expect(page.locator(".approval-card")).to_be_visible()
    await wait_idle(page)
    await clean(page, "phone approval card")
    await page.locator("#toggle-sidebar").click()
    await expect(page.locator("#sidebar")).to_be_in_viewport()
    await clean(page, "phone sidebar")
