"""Phone defects of issue 28, in the real browser at 390 x 844: the header took two rows,
and 17 controls were smaller than 44 px."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, expect

from aichat_devtools.fake_llm import Script
from tests.e2e.web.helpers import last_answer, send, signed_in, wait_idle
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(60)]

# Every control a finger must hit that is on screen now, smaller than 44 px either way
# (WCAG 2.5.5). Links inside an answer's text are words in a sentence, not controls; a
# checkbox's target is its label.
SMALL_CONTROLS = """() => {
  const controls = document.querySelectorAll(
    'button, select, textarea, input:not([type=hidden]):not([hidden]), summary, a[href],'
    + ' [role=menuitem]');
  const small = [];
  for (const c of controls) {
    if (c.closest('.markdown') && c.tagName === 'A') continue;
    // A box inside its label is hit anywhere on the label.
    const r = (c.tagName === 'INPUT' && c.closest('label') || c).getBoundingClientRect();
    const style = getComputedStyle(c);
    if (!r.width || !r.height || style.visibility === 'hidden') continue;
    if (r.bottom <= 0 || r.top >= innerHeight || r.right <= 0 || r.left >= innerWidth) continue;
    if (c.classList.contains('skip-link')) continue;  // off screen until focused
    if (r.width < 44 - 0.5 || r.height < 44 - 0.5) {
      const name = (c.getAttribute('aria-label') || c.textContent || '').trim().slice(0, 20);
      small.push(`${c.tagName.toLowerCase()}#${c.id}.${c.className} "${name}"`
        + ` ${Math.round(r.width)}x${Math.round(r.height)}`);
    }
  }
  return small;
}"""


async def small_controls(page: Page) -> list[str]:
    return list(await page.evaluate(SMALL_CONTROLS))


async def test_the_header_is_one_row_and_every_control_is_44_px(
    phone: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    page = await signed_in(phone, envoy, token)
    stack.fake.enqueue(
        Script(
            text="Here:\n\n```python\nprint('hi')\n```\n\n> a quote\n\nand a [link](https://example.com)."
        )
    )
    await send(page, "show me code")
    await wait_idle(page)
    await send(page, "calculate 2*21")
    await wait_idle(page)
    await expect(last_answer(page).locator(".tool-call")).to_have_count(1)

    # One row: every control of the header shares the title's line.
    header = await page.locator(".chat-header").bounding_box()
    assert header is not None and header["height"] <= 60, header
    tops = []
    for selector in ("#toggle-sidebar", "#chat-title", "#tools-button", "#chat-menu-button"):
        box = await page.locator(selector).bounding_box()
        assert box is not None, selector
        tops.append(box["y"] + box["height"] / 2)
    assert max(tops) - min(tops) < 8, tops
    overflow = await page.evaluate("document.documentElement.scrollWidth - innerWidth")
    assert overflow <= 0
    await page.screenshot(path=str(artifacts / "phone-chat.png"))
    assert await small_controls(page) == []

    # The same in every state a phone shows: the tools panel (with the model picker) ...
    await page.locator("#tools-button").click()
    await expect(page.locator("#tools-panel #model-select")).to_be_visible()
    assert await small_controls(page) == []
    await page.screenshot(path=str(artifacts / "phone-tools.png"))
    await page.locator("#tools-button").click()
    # ... the chat actions menu ...
    await page.get_by_role("button", name="Chat actions").click()
    await expect(page.get_by_role("menu", name="Chat actions")).to_be_visible()
    assert await small_controls(page) == []
    await page.screenshot(path=str(artifacts / "phone-menu.png"))
    await page.keyboard.press("Escape")
    # ... the sidebar ...
    await page.locator("#toggle-sidebar").click()
    await expect(page.locator("#sidebar")).to_be_in_viewport()
    assert await small_controls(page) == []
    await page.screenshot(path=str(artifacts / "phone-sidebar-open.png"))
    await page.keyboard.press("Escape")
    # ... and an approval card.
    await send(page, "add task water the fern")
    await expect(page.locator(".approval-card")).to_be_visible()
    await wait_idle(page)
    assert await small_controls(page) == []
    await page.screenshot(path=str(artifacts / "phone-approval.png"))
    assert page.errors == []  # type: ignore[attr-defined]
