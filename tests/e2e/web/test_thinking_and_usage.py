"""A reasoning model on the page: the "Thinking" section streams live, folds when the
answer starts and comes back after a reload; an answer's tokens and cost on demand; the
user's own usage today and this month with their budgets. Real chromium, real Envoy, the
wire-true fake playing Anthropic thinking (tests/support/reasoning_models.py)."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page, expect

from aichat_devtools.dev_token import DevKeys
from aichat_devtools.fake_llm import Script
from tests.e2e.web.conftest import page_envoy
from tests.e2e.web.helpers import last_answer, send, signed_in, wait_idle
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy
from tests.support.reasoning_models import reasoning_stack

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(90)]

THOUGHT = (
    "The user asks what two and two make. That is simple arithmetic: two plus two is four. "
    "I should answer briefly and plainly, without showing my working."
)


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChatStack]:
    """This module's own backend: priced reasoning models, and daily budgets to show."""
    where = tmp_path_factory.mktemp("thinking-stack")
    async with reasoning_stack(
        f"sqlite:///{where / 'aichat.db'}",
        where,
        heartbeat_seconds=0.5,
        daily_token_budget=100_000,
        daily_cost_budget="0.05",
    ) as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def envoy(
    stack: ChatStack, dev_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Envoy]:
    workdir = tmp_path_factory.mktemp("thinking-envoy")
    async with page_envoy(stack, dev_keys, workdir, os.environ) as running:
        yield running


async def ready(context: BrowserContext, envoy: Envoy, token: str) -> Page:
    """Signed in, with the new chat set up (a message typed before that could be lost:
    the page's start opens the draft after loading the sidebar)."""
    page = await signed_in(context, envoy, token)
    await expect(page.locator(".welcome")).to_be_visible()
    return page


async def test_thinking_streams_folds_and_stays_after_a_reload(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    page = await ready(desktop, envoy, token)
    gate = asyncio.Event()
    stack.fake.enqueue(
        Script(
            reasoning=THOUGHT,
            redacted_thinking=1,
            text="Two and two make **four**.",
            input_tokens=1000,
            output_tokens=500,
            token_delay=0.01,
            gate_after=8,  # held mid-thought: the page must show what came so far
            gate=gate,
        )
    )
    try:
        await send(page, "What is 2+2?")
        answer = last_answer(page)
        thinking = answer.locator("details.thinking")
        await expect(thinking).to_have_attribute("data-state", "streaming")
        await expect(thinking).to_have_attribute("open", "")
        await expect(thinking.locator("summary")).to_have_text("Thinking…")
        await expect(thinking.locator(".thinking-text")).to_contain_text("The user asks what")
        shown = await thinking.locator(".thinking-text").inner_text()
        assert len(shown) < len(THOUGHT)  # live: only what streamed so far
        await expect(answer.locator(".markdown")).to_be_hidden()  # no answer text yet
        await page.screenshot(path=str(artifacts / "thinking-live.png"))
    finally:
        gate.set()
    await wait_idle(page)
    answer = last_answer(page)
    thinking = answer.locator("details.thinking")
    await expect(answer.locator(".markdown strong")).to_have_text("four")
    # The answer came: the thinking folded away, whole, with a word on the hidden part.
    await expect(thinking).to_have_attribute("data-state", "done")
    await expect(thinking).not_to_have_attribute("open", "")
    await expect(thinking.locator("summary")).to_have_text("Thinking")
    await thinking.locator("summary").click()
    await expect(thinking.locator(".thinking-text")).to_have_text(THOUGHT)
    await expect(thinking.locator(".thinking-note")).to_contain_text("1 part")

    # Tokens and cost on demand: 1000 * 3 + 500 * 15 per million tokens = 0.0105 EUR.
    usage = answer.locator(".answer-usage")
    await expect(usage).to_be_hidden()
    await answer.locator(".usage-toggle").click()
    await expect(usage).to_contain_text("1,000")
    await expect(usage).to_contain_text(re.compile(r"500 · [\d,]+ reasoning"))
    await expect(usage).to_contain_text(re.compile(r"€0\.0105"))
    await expect(usage).to_contain_text("claude")
    await page.screenshot(path=str(artifacts / "thinking-done-usage.png"))

    await page.reload()
    await expect(page.locator("#app")).to_be_visible()
    stored = last_answer(page)
    await expect(stored.locator(".markdown strong")).to_have_text("four")
    again = stored.locator("details.thinking")
    await expect(again).to_be_visible()
    await expect(again).not_to_have_attribute("open", "")  # folded, as answers are
    await again.locator("summary").click()
    await expect(again.locator(".thinking-text")).to_have_text(THOUGHT)
    await stored.locator(".usage-toggle").click()
    await expect(stored.locator(".answer-usage")).to_contain_text(re.compile(r"€0\.0105"))
    await page.screenshot(path=str(artifacts / "thinking-after-reload.png"))
    assert page.errors == []  # type: ignore[attr-defined]


async def test_an_answer_without_reasoning_shows_no_thinking(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str
) -> None:
    page = await ready(desktop, envoy, token)
    await page.locator("#model-select").select_option("free")
    stack.fake.enqueue(Script(text="Plain answer."))
    await send(page, "hello")
    await wait_idle(page)
    answer = last_answer(page)
    await expect(answer.locator(".markdown")).to_have_text("Plain answer.")
    await expect(answer.locator("details.thinking")).to_be_hidden()
    await answer.locator(".usage-toggle").click()
    await expect(answer.locator(".answer-usage")).to_contain_text("not priced")


async def test_my_usage_today_this_month_and_budgets(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    page = await ready(desktop, envoy, token)
    stack.fake.enqueue(Script(text="Paid for.", input_tokens=2000, output_tokens=10))
    await send(page, "spend a little")
    await wait_idle(page)
    await page.locator("#my-usage").click()
    dialog = page.locator("#usage-dialog")
    await expect(dialog).to_be_visible()
    periods = dialog.locator(".usage-period")
    await expect(periods).to_have_count(2)
    # 2000 * 3 + 10 * 15 per million tokens = 0.00615 EUR, today and this month.
    for period in (periods.nth(0), periods.nth(1)):
        await expect(period).to_contain_text("2,000")
        await expect(period).to_contain_text(re.compile(r"€0\.00615"))
    await expect(periods.nth(1)).to_contain_text("This month")
    budgets = dialog.locator(".budget")
    await expect(budgets).to_have_count(2)
    await expect(budgets.nth(0)).to_contain_text("2,010 of 100,000")
    await expect(budgets.nth(1)).to_contain_text(re.compile(r"€0\.00615 of €0\.05"))
    value = await budgets.nth(1).locator("progress").get_attribute("value")
    assert value is not None and abs(float(value) - 0.123) < 0.001
    await page.screenshot(path=str(artifacts / "my-usage.png"))
    await dialog.get_by_role("button", name="Close").click()
    await expect(dialog).to_be_hidden()
    assert page.errors == []  # type: ignore[attr-defined]


async def test_thinking_and_my_usage_at_phone_width(
    phone: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    page = await ready(phone, envoy, token)
    stack.fake.enqueue(Script(reasoning=THOUGHT, text="Four.", input_tokens=10, output_tokens=60))
    await send(page, "2+2?")
    await wait_idle(page)
    answer = last_answer(page)
    await answer.locator("details.thinking summary").click()
    await answer.locator(".usage-toggle").click()
    await expect(answer.locator(".answer-usage")).to_be_visible()
    box = await answer.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390  # nothing wider than the phone
    await page.screenshot(path=str(artifacts / "thinking-phone.png"))
    await page.locator("#toggle-sidebar").click()
    await page.locator("#my-usage").click()
    await expect(page.locator("#usage-dialog")).to_be_visible()
    await page.screenshot(path=str(artifacts / "my-usage-phone.png"))
