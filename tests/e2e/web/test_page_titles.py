"""A chat's title as the server writes it, in the real browser, without a reload: the
page creates a new chat without a name, shows the first line meanwhile, and once the
first turn has ended with ``titlePending`` reads the session again until the title
model's words are there (issue 26.5, the quota branch's title model)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, expect

from aichat_backend.config import Settings
from aichat_devtools.dev_token import DevKeys
from aichat_devtools.fake_llm import Script
from tests.e2e.web.conftest import APP_NAME, page_envoy
from tests.e2e.web.helpers import rest, send, session_id, signed_in, wait_idle
from tests.support.chat import ChatStack, chat_stack
from tests.support.envoy import Envoy

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(60)]

if "title_model" not in Settings.model_fields:
    pytest.skip("needs the title model (AICHAT_TITLE_MODEL, quota branch)", allow_module_level=True)

QUESTION = "Organise un voyage de trois jours à Paris en mai"


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def titled(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChatStack]:
    db = tmp_path_factory.mktemp("web-titles") / "aichat.db"
    # The catalogue's one model titles too.
    async with chat_stack("openai", f"sqlite:///{db}", title_model="gpt-test") as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def titled_envoy(
    titled: ChatStack, dev_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Envoy]:
    env = {**os.environ, "AICHAT_APP_NAME": APP_NAME}
    async with page_envoy(titled, dev_keys, tmp_path_factory.mktemp("web-titles-envoy"), env) as e:
        yield e


async def test_the_model_title_replaces_the_first_line_without_a_reload(
    desktop: BrowserContext, titled_envoy: Envoy, titled: ChatStack, token: str, artifacts: Path
) -> None:
    page = await signed_in(desktop, titled_envoy, token)
    gate = asyncio.Event()
    # The answer, then the title, held until the turn has ended on the page.
    titled.fake.enqueue(
        Script(text="Jour 1 : le Marais."),
        Script(text='"Voyage à Paris en mai."', gate_after=1, gate=gate),
    )
    await send(page, QUESTION)
    await wait_idle(page)
    title = page.locator("#chat-title")
    in_sidebar = page.locator(".session-item.current .session-title")
    await expect(title).to_have_text(QUESTION)  # the first line, meanwhile
    gate.set()
    await expect(title).to_have_text("Voyage à Paris en mai")
    await expect(in_sidebar).to_have_text("Voyage à Paris en mai")
    assert "Voyage à Paris en mai" in await page.title()
    await page.screenshot(path=str(artifacts / "desktop-model-title.png"))
    stored = await rest(titled_envoy, token, "GET", f"/v1/chat/sessions/{await session_id(page)}")
    assert stored.json()["displayName"] == "Voyage à Paris en mai"
    # A later answer asks for no title: the name stays.
    titled.fake.enqueue(Script(text="Jour 2 : Montmartre."))
    await send(page, "et le jour 2 ?")
    await wait_idle(page)
    await expect(title).to_have_text("Voyage à Paris en mai")
    assert len(titled.fake.requests) == 3
    assert page.errors == []  # type: ignore[attr-defined]
