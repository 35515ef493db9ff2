from __future__ import annotations

import pytest
from playwright.async_api import BrowserContext, expect

from tests.e2e.web.helpers import last_answer, send, signed_in, wait_idle
from tests.support.envoy import Envoy

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]


async def test_smoke(desktop: BrowserContext, envoy: Envoy, token: str) -> None:
    page = await signed_in(desktop, envoy, token)
    await send(page, "Hello **world**")
    await wait_idle(page)
    await expect(last_answer(page).locator(".markdown strong")).to_have_text("world")
    await page.screenshot(path="/tmp/web_smoke.png")
    assert page.errors == []
