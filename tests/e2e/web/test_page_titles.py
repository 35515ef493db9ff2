"""A title written by a model reaches the page without a reload (issue 26.5): the page
creates chats unnamed (the server titles them), shows the first line meanwhile, and
after a turnEnded saying titlePending reads the chat again until its new name shows, in
the sidebar and the header."""

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
from tests.e2e.web.helpers import send, signed_in, wait_idle
from tests.support.chat import ChatStack, chat_stack
from tests.support.envoy import Envoy
from tests.support.waits import until

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(60)]


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChatStack]:
    """A stack of its own: its title model asks the fake once more after a first answer,
    which the package's scripted tests do not expect."""
    tmp = tmp_path_factory.mktemp("titles-stack")
    async with chat_stack(
        "openai", f"sqlite:///{tmp / 'aichat.db'}", title_model="gpt-test", heartbeat_seconds=0.5
    ) as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def envoy(
    stack: ChatStack, dev_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Envoy]:
    env = {**os.environ, "AICHAT_APP_NAME": APP_NAME}
    async with page_envoy(stack, dev_keys, tmp_path_factory.mktemp("titles-envoy"), env) as running:
        yield running


async def test_the_models_title_replaces_the_first_line_without_a_reload(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    gate = asyncio.Event()
    stack.fake.enqueue(
        Script(text="Start with the Louvre early in the morning."),
        Script(tokens=["Three days ", "in Paris"], gate_after=1, gate=gate),
    )
    try:
        await _watch_the_title(desktop, envoy, stack, token, artifacts, gate)
    finally:
        gate.set()  # never a held fake upstream at teardown


async def _watch_the_title(
    desktop: BrowserContext,
    envoy: Envoy,
    stack: ChatStack,
    token: str,
    artifacts: Path,
    gate: asyncio.Event,
) -> None:
    page = await signed_in(desktop, envoy, token)
    await send(page, "what should I see in Paris in three days?")
    await wait_idle(page)
    current = page.locator(".session-item.current .session-title")
    await expect(current).to_have_text("what should I see in Paris in three days?")
    await expect(page.locator("#chat-title")).to_have_text(
        "what should I see in Paris in three days?"
    )
    await until("the title model was asked", lambda: len(stack.fake.requests) == 2)
    gate.set()
    # No reload: the page reads the chat again until the model's title shows.
    await expect(current).to_have_text("Three days in Paris", timeout=15_000)
    await expect(page.locator("#chat-title")).to_have_text("Three days in Paris")
    assert await page.title() == f"Three days in Paris · {APP_NAME}"
    await page.screenshot(path=str(artifacts / "titles-model-title.png"))
    assert page.errors == []  # type: ignore[attr-defined]
