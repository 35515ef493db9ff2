"""Issue 27, item 5, in the real browser: a reasoning model's "Thinking" streams live in a
section of its own, folds when the answer begins and is there again after a reload; an
answer's tokens and cost on demand; the user's own usage today and this month.

The stack of this module serves the priced reasoning models (tests/support/
reasoning_models.py: ``claude`` thinks the Anthropic way by default, ``gpt`` the
OpenAI-compatible way), with daily budgets in tokens and in money.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, expect

from aichat_devtools.dev_token import DevKeys
from aichat_devtools.fake_llm import Script
from tests.e2e.web.conftest import APP_NAME, page_envoy
from tests.e2e.web.helpers import (
    axe_violations,
    chat_action,
    last_answer,
    send,
    signed_in,
    wait_idle,
)
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy
from tests.support.reasoning_models import reasoning_stack

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(60)]

THOUGHT = (
    "The user asks for a sum. Two and two make four. "
    "No tool is needed for that, so I answer four at once."
)
FIRST_WORDS = 6  # the fake holds the answer after this many words of reasoning


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def reasoning(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChatStack]:
    where = tmp_path_factory.mktemp("web-reasoning")
    async with reasoning_stack(
        f"sqlite:///{where / 'aichat.db'}",
        where,
        daily_token_budget=50_000,
        daily_cost_budget="1",
        heartbeat_seconds=0.5,
    ) as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def reasoning_envoy(
    reasoning: ChatStack, dev_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Envoy]:
    env = {**os.environ, "AICHAT_APP_NAME": APP_NAME}
    workdir = tmp_path_factory.mktemp("web-reasoning-envoy")
    async with page_envoy(reasoning, dev_keys, workdir, env) as running:
        yield running


async def test_thinking_streams_live_folds_and_stays_after_a_reload(
    desktop: BrowserContext,
    reasoning_envoy: Envoy,
    reasoning: ChatStack,
    token: str,
    artifacts: Path,
) -> None:
    gate = asyncio.Event()
    reasoning.fake.enqueue(
        Script(
            reasoning=THOUGHT,
            text="Four.",
            gate_after=FIRST_WORDS,
            gate=gate,
            input_tokens=1000,
            output_tokens=500,
        )
    )
    try:
        await thinking_live_then_reloaded(desktop, reasoning_envoy, token, gate, artifacts)
    finally:
        gate.set()  # a failure never leaves the turn held (the server would wait on it)


async def thinking_live_then_reloaded(
    desktop: BrowserContext,
    reasoning_envoy: Envoy,
    token: str,
    gate: asyncio.Event,
    artifacts: Path,
) -> None:
    page = await signed_in(desktop, reasoning_envoy, token)
    await send(page, "2+2?")
    answer = last_answer(page)
    thinking = answer.locator("details.thinking")
    # Live: open, saying it is thinking, the first words there before the rest exists.
    # (A fresh server's first Anthropic call loads the SDK: on a busy machine, seconds.)
    await expect(thinking).to_have_attribute("open", "", timeout=20_000)
    await expect(thinking.locator("summary")).to_have_text("Thinking…")
    await expect(thinking.locator(".thinking-text")).to_have_text("The user asks for a sum.")
    await expect(answer.locator(".markdown")).to_be_hidden()
    await page.screenshot(path=str(artifacts / "desktop-thinking-live.png"))
    assert await axe_violations(page) == []

    # A reload while it thinks: the turn runs on (detached) and its thinking so far is
    # read again from its first event, still live.
    await page.reload()
    await expect(page.locator("#stop-button")).to_be_visible()
    await expect(thinking).to_have_attribute("open", "")
    await expect(thinking.locator("summary")).to_have_text("Thinking…")
    await expect(thinking.locator(".thinking-text")).to_have_text("The user asks for a sum.")

    gate.set()
    await wait_idle(page)
    await expect(answer.locator(".markdown")).to_have_text("Four.")
    # The answer began: the thinking folded away, all of it kept.
    await expect(thinking).not_to_have_attribute("open", "")
    await expect(thinking.locator("summary")).to_have_text("Thinking")
    assert await thinking.locator(".thinking-text").text_content() == THOUGHT

    # Tokens and cost on demand: 1000 * 3 + 500 * 15 EUR per million = 0.0105 EUR.
    info = answer.get_by_role("button", name="Tokens and cost")
    panel = answer.locator(".usage-panel")
    await expect(panel).to_be_hidden()
    await info.click()
    await expect(info).to_have_attribute("aria-expanded", "true")
    await expect(panel).to_be_visible()
    await expect(panel.locator("caption")).to_have_text("Model: claude")
    rows = panel.locator("tr")
    await expect(rows.filter(has_text="Input tokens")).to_contain_text("1,000")
    await expect(rows.filter(has_text="Output tokens")).to_contain_text("500")
    await expect(rows.filter(has_text="of which thinking")).to_be_visible()
    await expect(rows.filter(has_text="Cost")).to_contain_text("€0.0105")
    await page.screenshot(path=str(artifacts / "desktop-answer-usage.png"))
    assert await axe_violations(page) == []

    # After a reload (ListMessages): the thinking is there, folded; it opens on a click.
    await page.reload()
    answer = last_answer(page)
    thinking = answer.locator("details.thinking")
    await expect(answer.locator(".markdown")).to_have_text("Four.")
    await expect(thinking).to_be_visible()
    await expect(thinking).not_to_have_attribute("open", "")
    await thinking.locator("summary").click()
    await expect(thinking.locator(".thinking-text")).to_have_text(THOUGHT)
    await answer.get_by_role("button", name="Tokens and cost").click()
    await expect(answer.locator(".usage-panel")).to_contain_text("€0.0105")
    await page.screenshot(path=str(artifacts / "desktop-thinking-reloaded.png"))
    assert page.errors == []  # type: ignore[attr-defined]


async def test_openai_style_reasoning_and_an_answer_without_reasoning(
    desktop: BrowserContext, reasoning_envoy: Envoy, reasoning: ChatStack, token: str
) -> None:
    """``reasoning_content`` deltas show the same way; a model that does not reason gets no
    section, and an answer of an unpriced model says so instead of a cost."""
    page = await signed_in(desktop, reasoning_envoy, token)
    await page.locator("#model-select").select_option("gpt")
    reasoning.fake.enqueue(Script(reasoning=THOUGHT, text="It is four.", token_delay=0.005))
    await send(page, "2+2?")
    await wait_idle(page)
    answer = last_answer(page)
    await expect(answer.locator(".markdown")).to_have_text("It is four.")
    assert await answer.locator(".thinking-text").text_content() == THOUGHT

    await page.locator("#new-chat").click()
    await page.locator("#model-select").select_option("free")
    reasoning.fake.enqueue(Script(text="Four, plainly."))
    await send(page, "2+2?")
    await wait_idle(page)
    answer = last_answer(page)
    await expect(answer.locator(".markdown")).to_have_text("Four, plainly.")
    await expect(answer.locator("details.thinking")).to_have_count(0)
    await answer.get_by_role("button", name="Tokens and cost").click()
    await expect(answer.locator(".usage-panel tr").filter(has_text="Cost")).to_contain_text(
        "not priced"
    )
    assert page.errors == []  # type: ignore[attr-defined]


async def test_your_usage_today_and_this_month_with_the_daily_budgets(
    desktop: BrowserContext,
    reasoning_envoy: Envoy,
    reasoning: ChatStack,
    token: str,
    artifacts: Path,
) -> None:
    page = await signed_in(desktop, reasoning_envoy, token)
    await page.get_by_role("button", name="Your usage").click()
    dialog = page.get_by_role("dialog", name="Your usage")
    today = dialog.locator(".usage-period").first
    await expect(today.locator("h3")).to_contain_text("Today")
    await expect(today.locator("tr").filter(has_text="Model calls")).to_contain_text("0")
    await dialog.get_by_role("button", name="Close").click()
    await expect(dialog).to_be_hidden()

    reasoning.fake.enqueue(
        Script(reasoning=THOUGHT, text="Four.", input_tokens=1000, output_tokens=500)
    )
    await send(page, "2+2?")
    await wait_idle(page)
    # Opened again, it is read again: this answer is counted, today and this month.
    await page.get_by_role("button", name="Your usage").click()
    periods = dialog.locator(".usage-period")
    for period, title in ((periods.nth(0), "Today"), (periods.nth(1), "This month")):
        await expect(period.locator("h3")).to_contain_text(title)
        await expect(period.locator("tr").filter(has_text="Input tokens")).to_contain_text("1,000")
        await expect(period.locator("tr").filter(has_text="Model calls")).to_contain_text("1")
        await expect(period.locator("tr").filter(has_text="Cost")).to_contain_text("€0.0105")
    tokens = dialog.get_by_role("meter", name="Daily token budget")
    await expect(tokens).to_have_attribute("value", "1500")
    await expect(tokens).to_have_attribute("max", "50000")
    await expect(dialog.locator(".usage-meter").last).to_contain_text("€0.0105 of €1.00")
    await page.screenshot(path=str(artifacts / "desktop-your-usage.png"))
    assert await axe_violations(page) == []
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    assert page.errors == []  # type: ignore[attr-defined]


async def test_thinking_and_usage_at_phone_width(
    phone: BrowserContext,
    reasoning_envoy: Envoy,
    reasoning: ChatStack,
    token: str,
    artifacts: Path,
) -> None:
    page = await signed_in(phone, reasoning_envoy, token)
    reasoning.fake.enqueue(
        Script(reasoning=THOUGHT, text="Four.", input_tokens=1000, output_tokens=500)
    )
    await send(page, "2+2?")
    await wait_idle(page)
    answer = last_answer(page)
    await answer.locator("details.thinking summary").click()
    await answer.get_by_role("button", name="Tokens and cost").click()
    await expect(answer.locator(".usage-panel")).to_contain_text("€0.0105")
    box = await answer.get_by_role("button", name="Tokens and cost").bounding_box()
    assert box is not None and box["width"] >= 44 and box["height"] >= 44
    await page.screenshot(path=str(artifacts / "phone-thinking-usage.png"))
    assert await axe_violations(page) == []


async def test_an_export_with_thinking_and_one_without(
    desktop: BrowserContext, reasoning_envoy: Envoy, reasoning: ChatStack, token: str
) -> None:
    page = await signed_in(desktop, reasoning_envoy, token)
    reasoning.fake.enqueue(Script(reasoning=THOUGHT, text="Four."))
    await send(page, "2+2?")
    await wait_idle(page)
    async with page.expect_download() as info:
        await chat_action(page, "Export with thinking (.md)")
    with_thinking = await asyncio.to_thread(Path(await (await info.value).path()).read_text)
    assert "<summary>Thinking</summary>" in with_thinking and THOUGHT in with_thinking
    assert "Four." in with_thinking
    async with page.expect_download() as info:
        await chat_action(page, "Export as .md")
    plain = await asyncio.to_thread(Path(await (await info.value).path()).read_text)
    assert "Four." in plain and THOUGHT not in plain


async def test_each_round_of_a_tool_using_turn_thinks_in_its_own_section(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    """On the package's stack (OpenAI wire, the bundled tasks tools): the model thinks,
    calls the calculator, thinks again and answers. Live, one answer shows thinking,
    the call, thinking; after a reload each round is its own stored message, each with
    its thinking."""
    stack.fake.enqueue(
        Script(
            reasoning="I should use the calculator.",
            tool_calls=[("c1", "tasks__calculate", {"expression": "6*7"})],
        ),
        Script(reasoning="The tool says 42.", text="It is 42."),
    )
    page = await signed_in(desktop, envoy, token)
    await send(page, "what is 6*7?")
    await wait_idle(page)
    answer = last_answer(page)
    await expect(answer.locator(".markdown")).to_have_text("It is 42.")
    parts = answer.locator(".answer-parts > *")
    await expect(parts).to_have_count(3)
    assert await parts.evaluate_all("ps => ps.map(p => p.className.split(' ')[0])") == [
        "thinking",
        "tool-call",
        "thinking",
    ]
    await expect(parts.nth(0).locator(".thinking-text")).to_have_text(
        "I should use the calculator."
    )
    await expect(parts.nth(2).locator(".thinking-text")).to_have_text("The tool says 42.")
    await page.reload()
    answers = page.locator("article.message.assistant")
    await expect(answers).to_have_count(2)
    await expect(answers.nth(0).locator(".thinking-text")).to_have_text(
        "I should use the calculator."
    )
    await expect(answers.nth(1).locator(".thinking-text")).to_have_text("The tool says 42.")
    await answers.nth(1).locator("details.thinking summary").click()
    await page.screenshot(path=str(artifacts / "desktop-thinking-rounds.png"))
    assert page.errors == []  # type: ignore[attr-defined]
