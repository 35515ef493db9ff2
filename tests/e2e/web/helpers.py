"""Small steps the browser tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
from playwright.async_api import BrowserContext, Page, expect

from tests.support.envoy import Envoy
from tests.support.http import TLS


async def signed_in(context: BrowserContext, envoy: Envoy, token: str, extra: str = "") -> Page:
    """The page opened the way `make run`'s link opens it: the token in the fragment."""
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto(f"{envoy.base_url}/web/#token={token}{extra}")
    await expect(page.locator("#app")).to_be_visible()
    return page


async def send(page: Page, text: str) -> None:
    """Type ``text`` and press Enter; returns once the page shows it as sent."""
    sent = page.locator("article.message.user")
    before = await sent.count()
    box = page.locator("#message-input")
    await box.fill(text)
    await box.press("Enter")
    await expect(sent).to_have_count(before + 1)


def last_answer(page: Page) -> Any:
    return page.locator("article.message.assistant").last


async def wait_idle(page: Page) -> None:
    """Until the running turn has ended (Send is back in place of Stop)."""
    await expect(page.locator("#send-button")).to_be_visible()
    await expect(page.locator("#stop-button")).to_be_hidden()


async def rest(envoy: Envoy, token: str, method: str, path: str, **kw: Any) -> httpx2.Response:
    async with httpx2.AsyncClient(verify=TLS, base_url=envoy.base_url, timeout=10) as client:
        return await client.request(
            method, path, headers={"authorization": f"Bearer {token}"}, **kw
        )


async def chat_action(page: Page, label: str) -> None:
    """Choose ``label`` (e.g. "Rename…", "Export as .md") in the chat actions menu."""
    await page.get_by_role("button", name="Chat actions").click()
    await page.get_by_role("menuitem", name=label).click()


AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"


async def axe_violations(
    page: Page, impacts: tuple[str, ...] = ("serious", "critical")
) -> list[str]:
    """axe-core (npm) run in the page: the serious and critical violations, one line each.

    Evaluated over the DevTools protocol, which the page's CSP (script-src 'self') does
    not govern: nothing is added to the page's own scripts."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE.read_text())
    result = await page.evaluate(
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3)})))"
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {v['nodes']}"
        for v in result
        if v["impact"] in impacts
    ]


async def animations_at_their_faintest(page: Page) -> int:
    """Pause every running animation half-way through: the page's pulses fade to their
    faintest there (``@keyframes pulse { 50% {...} }``), so a contrast check sees the
    worst frame every time rather than whichever frame it happened to land on.
    Returns how many animations it paused (a check that paused none proves nothing)."""
    return int(
        await page.evaluate(
            "document.getAnimations().map(a => { a.pause();"
            " a.currentTime = a.effect.getComputedTiming().duration / 2; return 1; }).length"
        )
    )


async def session_id(page: Page) -> str:
    """The open chat's id, once the page has put it in the address (its first message
    creates the session, so the address follows a moment after Send)."""
    # A function, not an expression: Playwright polls an expression with eval(), which
    # the page's CSP refuses once the first check finds it false (a slow machine).
    await page.wait_for_function("() => location.hash.includes('session=')")
    return str(await page.evaluate("location.hash")).split("session=", 1)[1]
