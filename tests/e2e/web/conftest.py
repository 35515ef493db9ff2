"""The web page in Debian's chromium, driven by Playwright, against the real stack.

Once for the package: the backend with the bundled tasks MCP server (calculator, add_task),
the scriptable fake model, the repository's envoy.yaml in front (serving the page and
the API on one origin), and one headless chromium. Every test gets its own browser
context (fresh sessionStorage) and its own user.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, async_playwright

from aichat_devtools import dev_envoy
from aichat_devtools.dev_token import DevKeys, ensure_keys, make_token
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy, envoy_in_front, render_for_test
from tests.support.fault_proxy import FaultProxy
from tests.support.tool_stack import tool_stack

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "web"
APP_NAME = "Nebula Chat"
# Small, so the size check before upload can be shown with a file a test makes.
MAX_ATTACHMENT_BYTES = 64 * 1024
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="package")
def dev_keys(tmp_path_factory: pytest.TempPathFactory) -> DevKeys:
    keys, _ = ensure_keys(tmp_path_factory.mktemp("dev-keys"))
    return keys


@pytest.fixture
def token(dev_keys: DevKeys, user: str) -> str:
    return make_token(dev_keys, user)


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChatStack]:
    tmp = tmp_path_factory.mktemp("web-stack")
    async with tool_stack(
        "openai",
        f"sqlite:///{tmp / 'aichat.db'}",
        tmp,
        max_attachment_bytes=MAX_ATTACHMENT_BYTES,
        heartbeat_seconds=0.5,
    ) as s:
        yield s


@asynccontextmanager
async def page_envoy(
    stack: ChatStack, dev_keys: DevKeys, workdir: Path, env: Mapping[str, str]
) -> AsyncIterator[Envoy]:
    """The repository's envoy.yaml serving the page and the API of ``stack``; the page's
    config.json made by the same command `make run` uses, from the settings in ``env``."""
    web_config = dev_envoy.write_web_config(dict(env), workdir / "web-config.json")
    config = render_for_test(
        backend_port=stack.server.port, jwks_path=dev_keys.jwks_path, web_config=web_config
    )
    async with envoy_in_front(config, workdir) as running:
        yield running


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def envoy(
    stack: ChatStack, dev_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Envoy]:
    # Settings matching the stack's: the app name and the limit must reach the page.
    env = {
        **os.environ,
        "AICHAT_APP_NAME": APP_NAME,
        "AICHAT_MAX_ATTACHMENT_BYTES": str(MAX_ATTACHMENT_BYTES),
    }
    async with page_envoy(stack, dev_keys, tmp_path_factory.mktemp("web-envoy"), env) as running:
        yield running


@pytest.fixture(scope="package")
def chromium() -> str:
    """Debian's chromium (Playwright is never allowed to download a browser of its own)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium")
    return CHROMIUM


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where the screenshots go (gitignored; CI keeps them for a look)."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="package")
async def desktop(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(viewport=DESKTOP, accept_downloads=True)
    context.set_default_timeout(10_000)
    try:
        yield context
    finally:
        await context.close()


@pytest_asyncio.fixture(loop_scope="package")
async def phone(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(
        viewport=PHONE,
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
        reduced_motion="reduce",  # the sidebar slides in at once: screenshots are stable
    )
    context.set_default_timeout(10_000)
    try:
        yield context
    finally:
        await context.close()


@dataclass
class FlakyBackend:
    """The page through an Envoy of its own whose backend link a test can cut (the
    backend down, as Envoy sees it), while the page's own files are still served."""

    envoy: Envoy
    link: FaultProxy


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def flaky(
    stack: ChatStack, dev_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FlakyBackend]:
    workdir = tmp_path_factory.mktemp("web-flaky-envoy")
    env = {**os.environ, "AICHAT_APP_NAME": APP_NAME}
    web_config = dev_envoy.write_web_config(env, workdir / "web-config.json")
    link = FaultProxy(upstream_port=stack.server.port)
    await link.start()
    config = render_for_test(
        backend_port=link.port, jwks_path=dev_keys.jwks_path, web_config=web_config
    )
    try:
        async with envoy_in_front(config, workdir) as running:
            yield FlakyBackend(running, link)
    finally:
        await link.close()
