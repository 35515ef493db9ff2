"""Keyboard defects of issue 28, each shown in the real browser: the attach button out of
reach, Tab lost in the hidden phone sidebar, no skip link, Escape closing nothing, arrow
keys on Export downloading a file each, and no drag-and-drop or paste of files."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Download, Page, expect

from tests.e2e.web.helpers import send, signed_in, wait_idle
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(60)]


async def focused(page: Page) -> str:
    return str(
        await page.evaluate(
            "() => { const e = document.activeElement; return e ? (e.id"
            " || e.getAttribute('aria-label') || e.textContent.trim().slice(0, 40)) : ''; }"
        )
    )


async def test_the_attach_button_is_reached_by_tab_and_opens_the_file_chooser(
    desktop: BrowserContext, envoy: Envoy, token: str
) -> None:
    page = await signed_in(desktop, envoy, token)
    # Listening from the start turns the browser's file dialog into Playwright's event
    # before any key is pressed (turned on late, a dialog may open natively instead).
    page.on("filechooser", lambda _chooser: None)
    await page.locator("#message-input").focus()
    await page.keyboard.press("Shift+Tab")
    assert await focused(page) == "attach-button"
    async with page.expect_file_chooser() as chooser:
        await page.keyboard.press("Enter")
    await (await chooser.value).set_files(
        [{"name": "k.txt", "mimeType": "text/plain", "buffer": b"keyboard"}]
    )
    await expect(page.locator("#attachment-list .chip")).to_contain_text("k.txt")


async def test_a_skip_link_leads_to_the_message_box(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, user: str, artifacts: Path
) -> None:
    session = await stack.new_session(user, display_name="Skip")
    # An opened chat focuses nothing: the first Tab of the page is the skip link.
    page = await signed_in(desktop, envoy, token, extra=f"&session={session.split('/', 1)[1]}")
    await expect(page.locator("#chat-title")).to_have_text("Skip")
    await page.keyboard.press("Tab")
    link = page.get_by_role("link", name="Skip to the message box")
    await expect(link).to_be_focused()
    await expect(link).to_be_in_viewport()
    await page.screenshot(path=str(artifacts / "desktop-skip-link.png"))
    await page.keyboard.press("Enter")
    await expect(page.locator("#message-input")).to_be_focused()


async def test_on_a_phone_tab_never_lands_in_the_closed_sidebar_and_escape_closes_it(
    phone: BrowserContext, envoy: Envoy, token: str, user: str
) -> None:
    page = await signed_in(phone, envoy, token)
    await send(page, "hello there")
    await wait_idle(page)
    await page.evaluate("document.activeElement.blur()")
    in_sidebar = 0
    for _ in range(50):
        await page.keyboard.press("Tab")
        in_sidebar += await page.evaluate(
            "Boolean(document.activeElement && document.activeElement.closest('#sidebar'))"
        )
    assert in_sidebar == 0
    # Where the 50th Tab lands depends on how many controls the chat has; the skip link,
    # when it is the one focused, lies over the menu button: focus leaves it first.
    await page.evaluate("document.activeElement.blur()")
    # Opened, its chats are reachable; Escape closes it and gives focus back to its button.
    await page.locator("#toggle-sidebar").click()
    await expect(page.locator("#sidebar")).to_be_in_viewport()
    assert await page.evaluate("Boolean(document.activeElement.closest('#sidebar'))")
    await page.keyboard.press("Escape")
    await expect(page.locator("#sidebar")).not_to_be_in_viewport()
    await expect(page.locator("#toggle-sidebar")).to_be_focused()


async def test_escape_closes_the_tools_panel(
    desktop: BrowserContext, envoy: Envoy, token: str
) -> None:
    page = await signed_in(desktop, envoy, token)
    await page.locator("#tools-button").click()
    await expect(page.locator("#tools-panel")).to_be_visible()
    await page.locator("#tools-panel input[type=checkbox]").first.focus()
    await page.keyboard.press("Escape")
    await expect(page.locator("#tools-panel")).to_be_hidden()
    await expect(page.locator("#tools-button")).to_be_focused()
    await expect(page.locator("#tools-button")).to_have_attribute("aria-expanded", "false")


async def test_arrow_keys_on_export_move_and_only_enter_downloads(
    desktop: BrowserContext, envoy: Envoy, token: str, artifacts: Path
) -> None:
    page = await signed_in(desktop, envoy, token)
    await send(page, "export me")
    await wait_idle(page)
    downloads: list[Download] = []
    page.on("download", lambda d: downloads.append(d))
    menu_button = page.get_by_role("button", name="Chat actions")
    await menu_button.focus()
    await page.keyboard.press("ArrowDown")  # opens the menu on its first item
    menu = page.get_by_role("menu", name="Chat actions")
    await expect(menu).to_be_visible()
    for _ in range(3):
        await page.keyboard.press("ArrowDown")
    await page.keyboard.press("ArrowUp")
    await expect(page.get_by_role("menuitem", name="Export as .md")).to_be_focused()
    assert downloads == []  # moving is not choosing
    await page.screenshot(path=str(artifacts / "desktop-menu.png"))
    async with page.expect_download() as info:
        await page.keyboard.press("Enter")
    download = await info.value
    assert download.suggested_filename.endswith(".md")
    await expect(menu).to_be_hidden()
    await expect(menu_button).to_be_focused()
    # Escape closes it without doing anything.
    await page.keyboard.press("ArrowDown")
    await expect(menu).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(menu).to_be_hidden()
    assert len(downloads) == 1


async def test_files_can_be_dropped_on_the_chat_or_pasted_into_the_message_box(
    desktop: BrowserContext, envoy: Envoy, token: str, artifacts: Path
) -> None:
    page = await signed_in(desktop, envoy, token)
    make = (
        "name => { const dt = new DataTransfer();"
        " dt.items.add(new File(['some notes'], name, {type: 'text/plain'})); return dt; }"
    )
    dropped = await page.evaluate_handle(make, "dropped.txt")
    await page.locator("#messages").dispatch_event("dragenter", {"dataTransfer": dropped})
    await expect(page.locator("#drop-zone")).to_be_visible()
    await page.screenshot(path=str(artifacts / "desktop-drop-zone.png"))
    await page.locator("#messages").dispatch_event("drop", {"dataTransfer": dropped})
    await expect(page.locator("#drop-zone")).to_be_hidden()
    await expect(page.locator("#attachment-list .chip")).to_contain_text("dropped.txt")
    await page.evaluate(
        "make => { const dt = (new Function('return ' + make))()('pasted.txt');"
        " document.getElementById('message-input').dispatchEvent("
        "new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true})); }",
        make,
    )
    await expect(page.locator("#attachment-list .chip")).to_have_count(2)
    await expect(page.locator("#attachment-list")).to_contain_text("pasted.txt")
