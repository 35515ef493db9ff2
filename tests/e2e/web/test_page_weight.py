"""Weight and caching (issue 28, item 5): Envoy compresses the page's files and they are
cached by version (hashed paths, a year's max-age, a short-lived index). The bytes of a
cold and of a warm load are measured as the browser received them."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from playwright.async_api import Browser, Page, expect

from aichat_devtools import web_version
from tests.e2e.web.conftest import DESKTOP
from tests.e2e.web.helpers import send, wait_idle
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy
from tests.support.http import TLS

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(60)]


class Wire:
    """What crossed the network for a page, from the DevTools protocol: bytes per URL as
    received (compressed, headers included), and which came from the browser's cache."""

    def __init__(self) -> None:
        self.urls: dict[str, str] = {}
        self.bytes: dict[str, float] = {}
        self.cached: set[str] = set()

    async def attach(self, page: Page) -> None:
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Network.enable")
        cdp.on("Network.requestWillBeSent", self._sent)
        cdp.on("Network.responseReceived", self._received)
        cdp.on("Network.loadingFinished", self._finished)

    def _sent(self, event: dict[str, Any]) -> None:
        self.urls[event["requestId"]] = event["request"]["url"]

    def _received(self, event: dict[str, Any]) -> None:
        response = event["response"]
        if response.get("fromDiskCache") or response.get("fromMemoryCache"):
            self.cached.add(event["requestId"])

    def _finished(self, event: dict[str, Any]) -> None:
        self.bytes[event["requestId"]] = event["encodedDataLength"]

    def page_files(self) -> dict[str, float]:
        """Bytes over the wire per file of the page (the API's calls left out)."""
        return {
            self.urls[r].split("/web/", 1)[1] or "index.html": n
            for r, n in self.bytes.items()
            if "/web/" in self.urls.get(r, "")
        }


async def test_cold_and_warm_load_bytes(
    browser: Browser, envoy: Envoy, stack: ChatStack, token: str
) -> None:
    context = await browser.new_context(viewport=DESKTOP)
    try:
        cold = Wire()
        page = await context.new_page()
        await cold.attach(page)
        await page.goto(f"{envoy.base_url}/web/#token={token}")
        await expect(page.locator("#app")).to_be_visible()
        await send(page, "warm the highlighter: ```python\nx = 1\n```")
        await wait_idle(page)
        await page.close()

        warm = Wire()
        page = await context.new_page()
        await warm.attach(page)
        await page.goto(f"{envoy.base_url}/web/#token={token}")  # a new tab: its own storage
        await expect(page.locator("#app")).to_be_visible()
        await page.close()
    finally:
        await context.close()
    cold_files, warm_files = cold.page_files(), warm.page_files()
    web = web_version.WEB
    own_files = [p for p in web_version.hashed_files(web) if p.suffix in (".js", ".css", ".svg")]
    raw = sum(p.stat().st_size for p in [*own_files, web / "index.html"])
    vendor = ["marked/lib/marked.esm.js", "dompurify/dist/purify.es.mjs"]
    vendor_raw = sum((web / "node_modules" / v).stat().st_size for v in vendor)
    print(
        f"\npage files: cold load {sum(cold_files.values()) / 1024:.1f} KiB over the wire "
        f"in {len(cold_files)} files; warm load {sum(warm_files.values()) / 1024:.1f} KiB "
        f"in {len(warm_files)} requests; uncompressed: own files {raw / 1024:.1f} KiB, "
        f"marked + DOMPurify {vendor_raw / 1024:.1f} KiB; largest cold: "
        f"{sorted(((round(n / 1024, 1), k) for k, n in cold_files.items()), reverse=True)[:5]}"
    )
    # Warm: only the index and the settings cross the network again; every versioned
    # file comes from the browser's cache, not even revalidated.
    fetched = {name for name, n in warm_files.items() if n > 0}
    assert fetched == {"index.html", "config.json"}, warm_files
    versioned = [r for r, url in warm.urls.items() if "/web/v/" in url]
    assert versioned and all(r in warm.cached for r in versioned)
    assert sum(warm_files.values()) < 0.1 * sum(cold_files.values())
    # Cold: compressed, the page's own JavaScript and CSS far below their raw size.
    own = {k: v for k, v in cold_files.items() if "/vendor/" not in k}
    assert sum(own.values()) < 0.45 * raw, own


async def test_files_are_compressed_and_cached_by_version(envoy: Envoy) -> None:
    version = web_version.stamped()
    async with httpx2.AsyncClient(verify=TLS, base_url=envoy.base_url, timeout=10) as client:
        for path, kind in [
            (f"/web/v/{version}/js/chat.js", "text/javascript"),
            (f"/web/v/{version}/styles.css", "text/css"),
            (f"/web/v/{version}/vendor/marked.esm.js", "text/javascript"),
        ]:
            for accepted, encoding in (("br, gzip", "br"), ("gzip", "gzip")):
                response = await client.get(path, headers={"accept-encoding": accepted})
                assert response.status_code == 200
                assert response.headers["content-type"].startswith(kind)
                assert response.headers["content-encoding"] == encoding
                assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
                assert "accept-encoding" in response.headers["vary"].lower()
        index = await client.get("/web/", headers={"accept-encoding": "gzip"})
        assert index.headers["cache-control"] == "no-cache"
        assert index.headers["content-encoding"] == "gzip"
        assert f"/web/v/{version}/js/main.js" in index.text
        # An API answer is left as it was (the compressors run on the page's routes only).
        health = await client.get("/v1/chat/health", headers={"accept-encoding": "br, gzip"})
        assert "content-encoding" not in health.headers
