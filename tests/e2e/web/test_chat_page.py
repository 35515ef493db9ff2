"""The web chat in a real browser: sign-in, sessions, streaming Markdown, tools, approvals,
export, rename, delete, and what the page must never do (run injected script, show
another user's chat)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx2
import pytest
from playwright.async_api import BrowserContext, expect

from aichat_devtools import web_version
from aichat_devtools.fake_llm import Script
from tests.e2e.web.conftest import APP_NAME
from tests.e2e.web.helpers import chat_action, last_answer, rest, send, signed_in, wait_idle
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy
from tests.support.http import TLS

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(60)]

MARKDOWN = (
    "Here is **bold**, a list and a table:\n\n- one\n- two\n\n"
    "| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\nprint('hi')\n```\n"
)


async def test_without_a_token_the_page_says_how_to_sign_in(
    desktop: BrowserContext, envoy: Envoy
) -> None:
    page = await desktop.new_page()
    response = await page.goto(f"{envoy.base_url}/")  # redirected to /web/
    assert response is not None and response.ok and page.url.endswith("/web/")
    assert "script-src 'self'" in (await response.all_headers())["content-security-policy"]
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#signin-title")).to_have_text("Sign in to continue")
    await expect(page.locator("#signin-reason")).to_have_text(
        "No sign-in token was given to this page."
    )
    await expect(page.locator("#signin h1")).to_have_text(APP_NAME)
    await expect(page.locator("#app")).to_be_hidden()
    # The page's files need no token; every API call does.
    version = web_version.stamped()
    async with httpx2.AsyncClient(verify=TLS, base_url=envoy.base_url, timeout=10) as client:
        script = await client.get(f"/web/v/{version}/js/main.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert "import" in script.text
        vendor = await client.get(f"/web/v/{version}/vendor/purify.es.mjs")
        assert vendor.status_code == 200 and "DOMPurify" in vendor.text
        config = await client.get("/web/config.json")
        assert config.json()["appName"] == APP_NAME
        api = await client.get("/v1/chat/sessions")
        assert api.status_code == 401
        # A file the page does not have is missing, not a missing token (issue 30); any
        # path outside /web/ still needs one.
        other = await client.get("/web/nothing-here.js")
        assert other.status_code == 404
        assert (await client.get("/v1/chat/nothing-here")).status_code == 401


async def test_a_rejected_token_leads_to_the_sign_in_message(
    desktop: BrowserContext, envoy: Envoy
) -> None:
    page = await desktop.new_page()
    await page.goto(f"{envoy.base_url}/web/#token=not-a-jwt")
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#signin-reason")).to_contain_text("did not accept")
    # The rejected token is forgotten, and was never in the address bar for long.
    assert await page.evaluate("sessionStorage.getItem('aichat.token')") is None
    assert "not-a-jwt" not in page.url


async def test_chat_streams_markdown_runs_tools_and_continues_after_approval(
    desktop: BrowserContext,
    envoy: Envoy,
    stack: ChatStack,
    token: str,
    artifacts: Path,
) -> None:
    page = await signed_in(desktop, envoy, token)
    # The token left the address bar for sessionStorage.
    assert token not in page.url
    assert await page.evaluate("sessionStorage.getItem('aichat.token')") == token
    await expect(page.locator(".sidebar .app-name")).to_have_text(APP_NAME)
    await expect(page.locator("#model-select")).to_have_value("gpt-test")

    # Shift+Enter is a new line, not a send.
    box = page.locator("#message-input")
    await box.type("first line")
    await box.press("Shift+Enter")
    await box.type("second line")
    assert await box.input_value() == "first line\nsecond line"
    await expect(page.locator("article.message")).to_have_count(0)

    # A slow answer, so it is seen arriving token by token with Stop offered meanwhile.
    tokens = re.findall(r"\S+\s*|\s+", MARKDOWN)
    stack.fake.enqueue(Script(tokens=tokens, token_delay=0.05))
    await box.press("Enter")
    answer = last_answer(page)
    await expect(answer.locator(".markdown")).to_contain_text("bold")
    await expect(page.locator("#stop-button")).to_be_visible()
    partial = await answer.locator(".markdown").inner_text()
    assert "print" not in partial, "the whole answer came at once"
    await wait_idle(page)
    await expect(answer.locator(".markdown strong")).to_have_text("bold")
    await expect(answer.locator(".markdown li")).to_have_count(2)
    await expect(answer.locator(".markdown table td")).to_have_count(2)
    await expect(answer.locator(".markdown pre code")).to_contain_text("print('hi')")
    await expect(answer).not_to_have_class(re.compile("incomplete"))

    # The new session is in the list, highlighted; its tools are now locked.
    current = page.locator(".session-item.current")
    await expect(current).to_have_count(1)
    # Titled by the server from the first message (on one line), as the page creates
    # chats unnamed so that a title model may name them (titles.js).
    await expect(current.locator(".session-title")).to_have_text("first line second line")
    await expect(page.locator("#tools-button")).to_have_attribute("data-locked", "true")
    await page.locator("#tools-button").click()
    await expect(page.locator("#tools-panel input[type=checkbox]").first).to_be_disabled()
    await expect(page.locator("#tools-panel")).to_contain_text("Locked")
    await page.locator("#tools-button").click()

    # The calculator is read-only: it runs at once and the answer uses its result.
    await send(page, "calculate 6*7")
    await wait_idle(page)
    answer = last_answer(page)
    await expect(answer.locator(".tool-call")).to_contain_text("calculate")
    await expect(answer.locator(".tool-call .tool-state")).to_have_text("done")
    await expect(answer.locator(".markdown")).to_contain_text("42")

    # add_task asks first: a card with tool, server, arguments; edited, then approved.
    await send(page, "add task water the plants")
    card = page.locator(".approval-card")
    await expect(card).to_be_visible()
    await expect(card.locator(".approval-tool")).to_contain_text("add_task")
    await expect(card.locator(".approval-server")).to_contain_text("tasks")
    await expect(card.locator(".approval-args")).to_contain_text("water the plants")
    await wait_idle(page)
    await page.screenshot(path=str(artifacts / "desktop-approval.png"))
    await card.get_by_role("button", name="Edit arguments").click()
    editor = card.locator("textarea")
    await editor.fill(json.dumps({"title": "water the roses"}))
    await card.get_by_role("button", name="Approve edited").click()
    await expect(card).to_have_attribute("data-decision", "approved")
    await wait_idle(page)
    # The turn went on in the same answer: the tool ran with the edited arguments.
    answer = last_answer(page)
    await expect(answer.locator(".approval-card")).to_have_count(1)
    await expect(answer.locator(".markdown")).to_contain_text("water the roses")
    await expect(answer.locator(".tool-call .tool-state").last).to_have_text("done")
    await page.screenshot(path=str(artifacts / "desktop.png"))
    assert page.errors == []  # type: ignore[attr-defined]


async def test_export_rename_and_delete(
    desktop: BrowserContext, envoy: Envoy, token: str, tmp_path: Path
) -> None:
    page = await signed_in(desktop, envoy, token)
    await send(page, "remember the milk")
    await wait_idle(page)
    await expect(last_answer(page)).to_contain_text("Echo: remember the milk")
    name = await page.evaluate("location.hash")
    session_id = name.split("session=", 1)[1]

    for extension, expected in (
        ("md", "remember the milk"),
        ("txt", "Echo: remember the milk"),
        ("json", '"text"'),
    ):
        async with page.expect_download() as info:
            await chat_action(page, f"Export as .{extension}")
        download = await info.value
        assert download.suggested_filename.endswith(f".{extension}"), download.suggested_filename
        saved = tmp_path / download.suggested_filename
        await download.save_as(saved)
        text = saved.read_text()
        assert expected in text, text
        if extension == "json":
            assert json.loads(text)

    await chat_action(page, "Rename…")
    await page.locator("#prompt-input").fill("Shopping")
    await page.locator("#prompt-input").press("Enter")
    await expect(page.locator("#chat-title")).to_have_text("Shopping")
    await expect(page.locator(".session-item.current .session-title")).to_have_text("Shopping")
    stored = await rest(envoy, token, "GET", f"/v1/chat/sessions/{session_id}")
    assert stored.json()["displayName"] == "Shopping"

    # Delete asks first; Cancel keeps the chat.
    await chat_action(page, "Delete…")
    await expect(page.locator("#confirm-text")).to_contain_text("Shopping")
    await page.locator("#confirm-dialog").get_by_role("button", name="Cancel").click()
    await expect(page.locator(".session-item.current")).to_have_count(1)
    await chat_action(page, "Delete…")
    await page.locator("#confirm-ok").click()
    await expect(page.locator(".session-item")).to_have_count(0)
    await expect(page.locator("#chat-title")).to_have_text("New chat")
    gone = await rest(envoy, token, "GET", f"/v1/chat/sessions/{session_id}")
    assert gone.status_code == 404


async def test_script_in_a_model_answer_does_not_run(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str
) -> None:
    page = await signed_in(desktop, envoy, token)
    attack = (
        'Look: <img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> '
        '<a href="javascript:window.__pwned=3">click</a> '
        "[md link](javascript:window.__pwned=4) "
        '<svg onload="window.__pwned=5"></svg> <iframe src="javascript:parent.__pwned=6"></iframe> '
        "and **still rendered**"
    )
    stack.fake.enqueue(Script(text=attack))
    await send(page, "say something nasty")
    await wait_idle(page)
    body = last_answer(page).locator(".markdown")
    await expect(body.locator("strong")).to_have_text("still rendered")
    await body.get_by_text("click").click()
    # The sanitizer removed every way to run script (the CSP would also have stopped it).
    assert await page.evaluate("window.__pwned") is None
    html = await body.inner_html()
    for needle in ("onerror", "<script", "javascript:", "onload", "<iframe"):
        assert needle not in html.lower(), html
    assert page.errors == []  # type: ignore[attr-defined]


async def test_another_users_session_cannot_be_opened_by_url(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str
) -> None:
    secret = "bob's secret plan"
    bob = "bob-" + token[-8:]
    session = await stack.new_session(bob, display_name="Bob only")
    await stack.turn(bob, session, secret)
    bob_id = session.split("/", 1)[1]

    page = await signed_in(desktop, envoy, token, extra=f"&session={bob_id}")
    await expect(page.locator(".toast-error")).to_contain_text("not yours")
    await expect(page.locator("#chat-title")).to_have_text("New chat")
    assert secret not in await page.content()
    assert "Bob only" not in await page.content()
