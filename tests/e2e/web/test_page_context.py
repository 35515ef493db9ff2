"""Issue 26, item 7, in the real browser: a gauge of how full the model's context window
is, and a marker where older messages were folded into a summary (live, from the
``contextCompacted`` event, and after a reload, from ``Message.contextSummary``).

The stack of this module runs a 4,096-token model whose fake upstream refuses longer
requests as OpenAI does, so a few long messages make the server compact."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, expect

from aichat_devtools.dev_token import DevKeys
from aichat_devtools.fake_llm import FakeLLMServer
from tests.e2e.web.conftest import APP_NAME, page_envoy
from tests.e2e.web.helpers import axe_violations, send, signed_in, wait_idle
from tests.support.chat import MODELS, ChatStack, provider_settings
from tests.support.envoy import Envoy
from tests.support.server import make_settings, running_server

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(120)]

WINDOW = 4096
MOST_TURNS = 12  # far more than the window holds: the compaction comes well before


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def small_window(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChatStack]:
    db = tmp_path_factory.mktemp("web-context") / "aichat.db"
    async with FakeLLMServer(context_windows={MODELS["openai"]: WINDOW}) as fake:
        settings = make_settings(
            f"sqlite:///{db}",
            **provider_settings("openai", fake),
            llm_context_window=WINDOW,
            heartbeat_seconds=0.5,
        )
        async with running_server(settings) as server:
            yield ChatStack(server=server, fake=fake, provider="openai")


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def small_window_envoy(
    small_window: ChatStack, dev_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Envoy]:
    env = {**os.environ, "AICHAT_APP_NAME": APP_NAME}
    workdir = tmp_path_factory.mktemp("web-context-envoy")
    async with page_envoy(small_window, dev_keys, workdir, env) as running:
        yield running


def percent(text: str | None) -> int:
    found = re.fullmatch(r"(\d+)%", (text or "").strip())
    assert found, text
    return int(found.group(1))


async def test_gauge_fills_and_a_compaction_is_marked_live_and_after_a_reload(
    desktop: BrowserContext,
    small_window_envoy: Envoy,
    small_window: ChatStack,
    token: str,
    artifacts: Path,
) -> None:
    page = await signed_in(desktop, small_window_envoy, token)
    gauge = page.locator("#context-gauge")
    await expect(gauge).to_be_hidden()  # a new chat has no context yet
    marker = page.locator(".compaction-marker")
    shown: list[int] = []
    for turn in range(MOST_TURNS):
        # ~1,000 tokens by the server's count (bytes / 3), echoed back by the fake.
        await send(page, " ".join(f"t{turn}w{i}" for i in range(400)))
        await wait_idle(page)
        await expect(gauge).to_be_visible()
        # Once the turn ended, it shows the provider's count of its last call.
        await expect(gauge).to_have_attribute("title", re.compile("at the last model call"))
        shown.append(percent(await gauge.locator(".context-percent").text_content()))
        if await marker.count():
            break
    else:
        pytest.fail(f"no compaction in {MOST_TURNS} turns; the gauge showed {shown}")
    assert shown[0] < shown[-2] if len(shown) > 2 else shown[0] > 0, shown
    assert all(0 < p <= 100 for p in shown), shown
    await expect(marker).to_have_count(1)
    await expect(marker).to_contain_text("summarized to fit the model's context")
    await expect(marker).to_have_attribute("role", "note")
    # The marker sits after the last message folded, before the turn that folded it.
    through = await marker.get_attribute("data-through")
    assert through
    folded = page.locator(f'article[data-message="{through}"]')
    assert await folded.evaluate(
        "(n) => n.nextElementSibling.classList.contains('compaction-marker')"
    )
    await marker.locator("summary").click()
    await expect(marker.locator(".compaction-text")).not_to_be_empty()
    meter = gauge.locator("meter")
    assert "tokens of the model's context" in str(await meter.get_attribute("aria-valuetext"))
    await marker.scroll_into_view_if_needed()
    await page.screenshot(path=str(artifacts / "desktop-context-compacted.png"))
    assert await axe_violations(page) == []

    # After a reload: the marker from the stored summary, in the same place; the gauge
    # from the last answer against the model's window.
    await page.reload()
    marker = page.locator(".compaction-marker")
    await expect(marker).to_have_count(1)
    await expect(marker).to_have_attribute("data-through", through)
    await expect(
        page.locator(f'article[data-message="{through}"] + .compaction-marker')
    ).to_have_count(1)
    # ... the same figure as when the last turn ended (its input tokens, by the provider).
    await expect(gauge.locator(".context-percent")).to_have_text(f"{shown[-1]}%")
    await marker.scroll_into_view_if_needed()
    await page.screenshot(path=str(artifacts / "desktop-context-reloaded.png"))
    assert page.errors == []  # type: ignore[attr-defined]

    # A new chat: no gauge until it has context.
    await page.locator("#new-chat").click()
    await expect(gauge).to_be_hidden()
