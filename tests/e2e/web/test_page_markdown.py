"""Answers as Markdown (issue 28, items 2 and 4) in the real browser: code blocks with a
Copy button and highlighting, code at 14 px or more, styled quotes, a jump to the latest
text while scrolled up; and the rendering cost of a long answer with the CPU slowed 4x
(no long task over 50 ms; on a host slower than the high-end desktop that 4x assumes, less:
cpu_slowdown.py), with a selection surviving the stream."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, expect

from aichat_devtools.fake_llm import Script
from tests.e2e.web.cpu_slowdown import device_slowdown
from tests.e2e.web.helpers import last_answer, send, signed_in, wait_idle
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(90)]

CODE = "def area(r):\n    return 3.14159 * r * r\n"
ANSWER = (
    "Here is the function:\n\n```python\n" + CODE + "```\n\n"
    "> Measure twice, cut once.\n\nUse `area(2)` to try it."
)


TRACE_CATEGORIES = [
    "toplevel",
    "devtools.timeline",
    "disabled-by-default-devtools.timeline",
    "blink.user_timing",
]


@dataclass
class Task:
    start_us: float
    wall_ms: float
    cpu_ms: float


def main_thread_tasks(trace: list[dict[str, Any]]) -> list[Task]:
    """The renderer main thread's tasks (it is the thread that runs the page's functions)
    with their wall and CPU time."""
    calls = [(e["pid"], e["tid"]) for e in trace if e.get("name") == "FunctionCall"]
    main = max(set(calls), key=calls.count)
    return [
        Task(e["ts"], e["dur"] / 1000, e.get("tdur", e["dur"]) / 1000)
        for e in trace
        if e.get("ph") == "X" and e.get("name") == "RunTask" and (e["pid"], e["tid"]) == main
    ]


def cpu_within(
    tasks: list[Task], trace: list[dict[str, Any]], mark: float, start: float, wall: float
) -> float:
    """The CPU time of the traced task a long task (page clock, ms) was: the page's clock
    is matched to the trace's by the mark made on both."""
    marked = next(e["ts"] for e in trace if e.get("name") == "aichat-stream")
    at = marked + (start - mark) * 1000
    near = [t for t in tasks if at - 2000 <= t.start_us <= at + wall * 1000]
    return max((t.cpu_ms for t in near), default=0.0)


def long_answer() -> str:
    """About 880 words of the Markdown models write: headings, paragraphs, lists, code,
    a table."""
    sections = []
    for n in range(8):
        words = " ".join(f"word{n}x{i}" for i in range(60))
        items = "\n".join(f"- item {n}.{i} with a few more words here" for i in range(3))
        code = f"```python\ndef step_{n}(x):\n    return x * {n} + 1\n```"
        table = f"| step | value |\n|---|---|\n| {n} | {n * n} |"
        sections.append(f"## Part {n}\n\nFirst {words}.\n\n{items}\n\n{code}\n\n{table}")
    return "\n\n".join(sections) + "\n"


def pieces(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)


async def test_code_blocks_quotes_and_sizes(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    page = await signed_in(desktop, envoy, token)
    await desktop.grant_permissions(["clipboard-read", "clipboard-write"])
    stack.fake.enqueue(Script(text=ANSWER))
    await send(page, "write me a function")
    await wait_idle(page)
    body = last_answer(page).locator(".markdown")
    block = body.locator(".code-block")
    await expect(block.locator(".code-bar")).to_contain_text("python")
    # Highlighted by highlight.js: keywords and numbers are spans of their own.
    await expect(block.locator("code .hljs-keyword").first).to_have_text("def")
    await expect(block.locator("code .hljs-number").first).to_have_text("3.14159")
    # Copy puts exactly the code on the clipboard.
    await block.get_by_role("button", name="Copy python").click()
    await expect(block.get_by_role("button", name="Copy python")).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == CODE
    # Code is at least 14 px, in blocks and inline.
    for code in (block.locator("code"), body.locator("p code")):
        size = await code.evaluate("n => parseFloat(getComputedStyle(n).fontSize)")
        assert size >= 14, size
    # A quote looks like one: a bar at its side and a background of its own.
    quote = body.locator("blockquote")
    style = await quote.evaluate(
        "n => { const s = getComputedStyle(n);"
        " return [parseFloat(s.borderLeftWidth), s.backgroundColor]; }"
    )
    assert style[0] >= 3 and style[1] not in ("rgba(0, 0, 0, 0)", "transparent"), style
    await page.screenshot(path=str(artifacts / "desktop-markdown.png"))
    assert page.errors == []  # type: ignore[attr-defined]


async def test_scrolled_up_the_answer_stays_put_and_jump_to_latest_goes_down(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str, artifacts: Path
) -> None:
    page = await signed_in(desktop, envoy, token)
    lines = "".join(f"Line {i} of a long answer.\n\n" for i in range(120))
    stack.fake.enqueue(Script(tokens=pieces(lines), token_delay=0.01))
    await send(page, "a long one")
    answer = last_answer(page)
    await expect(answer.locator(".markdown")).to_contain_text("Line 30")
    jump = page.get_by_role("button", name="Jump to latest")
    await expect(jump).to_be_hidden()  # following the text, nothing to jump to
    await page.locator("#messages").evaluate("n => n.scrollTo(0, 0)")
    await expect(jump).to_be_visible()
    # The answer grows on (at the machine's pace: a shared machine may be slow to stream).
    await expect(answer.locator(".markdown")).to_contain_text("Line 90", timeout=30_000)
    # The reader was not pulled down while the text grew.
    assert await page.locator("#messages").evaluate("n => n.scrollTop") < 50
    await page.screenshot(path=str(artifacts / "desktop-jump-to-latest.png"))
    await jump.click()
    await expect(jump).to_be_hidden()
    gap = await page.locator("#messages").evaluate(
        "n => n.scrollHeight - n.scrollTop - n.clientHeight"
    )
    assert gap < 80
    await wait_idle(page)


async def test_a_long_answer_streams_without_long_tasks_and_keeps_a_selection(
    desktop: BrowserContext, envoy: Envoy, stack: ChatStack, token: str
) -> None:
    """CPU slowed 4x (DevTools' CPU throttling; less on a slower host, to the same device:
    cpu_slowdown.py), an 880-word answer streamed: the page's
    long tasks (PerformanceObserver 'longtask') are read together with a trace of the
    renderer's main thread, which says how much of each task was the page's own work
    (CPU time, slowed as much) and how much was this shared machine running something
    else. No task may take over 50 ms of the page's own work."""
    text = long_answer()
    assert 860 <= len(text.split()) <= 920  # the 880-word answer

    async def stream_measured() -> tuple[float, list[tuple[int, int]]]:
        """One 880-word answer streamed under the trace, on a page of its own (a stream
        measured again starts from the same page, not one already holding long answers):
        (the longest task's CPU ms, the long tasks seen). The selection and the answer
        are checked each time."""
        page = await signed_in(desktop, envoy, token)
        # One-time costs are paid first, by a short answer: loading the highlighter and the
        # first run of each Markdown path. What is measured is the stream.
        stack.fake.enqueue(Script(text=long_answer().split("## Part 1")[0]))
        await send(page, "warm up")
        await wait_idle(page)
        await expect(last_answer(page).locator(".hljs-keyword").first).to_have_text("def")
        await page.wait_for_function("() => true")  # Playwright's own script, compiled now
        host_index, rate = await device_slowdown(page)
        cdp = await desktop.new_cdp_session(page)
        await cdp.send("Emulation.setCPUThrottlingRate", {"rate": rate})
        await page.evaluate(
            "() => { window.__long = []; new PerformanceObserver(list => {"
            " for (const e of list.getEntries()) window.__long.push([e.startTime, e.duration]); })"
            ".observe({type: 'longtask'}); }"
        )
        browser = desktop.browser
        assert browser is not None
        await browser.start_tracing(page=page, categories=TRACE_CATEGORIES)
        await page.evaluate("performance.mark('aichat-stream')")  # on both clocks
        stack.fake.enqueue(Script(tokens=pieces(text), token_delay=0.004))
        # Waits below are the page's own tiny checks every 250 ms (Playwright's expect would
        # poll in the page every frame and be measured with it).
        box = page.locator("#message-input")
        await box.fill("explain it all")
        await box.press("Enter")
        # The first paragraph is final once the list after it shows (until then it is the
        # block still being written, drawn again each render: a selection in it would go).
        await page.wait_for_function(
            "() => /item 0\\.0/.test(document.querySelector("
            "'article.assistant:last-of-type .markdown')?.textContent || '')",
            polling=250,
        )
        answer = last_answer(page)
        # Select part of the first paragraph while the rest streams in (found and selected
        # in one script: a handle taken first could be another render's by then).
        chosen = await page.evaluate(
            "() => { const p = document.querySelector("
            "'article.assistant:last-of-type .markdown p');"
            " const r = document.createRange(); const t = p.firstChild;"
            " r.setStart(t, 6); r.setEnd(t, 40); const s = getSelection();"
            " s.removeAllRanges(); s.addRange(r); return s.toString(); }"
        )
        assert chosen.startswith("word0x0")
        await page.wait_for_function(
            "() => !document.getElementById('send-button').hidden", polling=250, timeout=60_000
        )
        long_tasks = await page.evaluate("window.__long")
        mark = await page.evaluate("performance.getEntriesByName('aichat-stream')[0].startTime")
        trace = json.loads(await browser.stop_tracing())["traceEvents"]
        await cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
        tasks = main_thread_tasks(trace)
        worst = max(tasks, key=lambda t: t.cpu_ms)
        explained = [
            (round(wall), round(cpu_within(tasks, trace, mark, start, wall)))
            for start, wall in long_tasks
        ]
        print(
            f"\n880-word answer, host BenchmarkIndex {host_index:.0f}, CPU slowed {rate:.2f}x: "
            f"{len(tasks)} main-thread tasks, the longest "
            f"{worst.cpu_ms:.1f} ms of CPU ({worst.wall_ms:.1f} ms wall); long tasks seen by "
            f"PerformanceObserver (wall ms, the page's CPU ms in them): {explained}"
        )
        # The selection survived every render of the stream.
        assert await page.evaluate("getSelection().toString()") == chosen
        shown = await answer.locator(".markdown").evaluate("n => n.textContent")
        assert "word7x59" in shown and "Part 7" in shown
        await expect(answer.locator(".markdown table")).to_have_count(8)
        await expect(answer.locator(".code-block")).to_have_count(8)
        await page.close()
        return worst.cpu_ms, explained

    # The page's own work is what is bounded; a busy shared machine can only add to a
    # task's CPU time (cache and core contention), never take from it. So a stream
    # over the bound is run again, at most twice: a page whose tasks really exceed it
    # fails every time.
    for _attempt in range(3):
        longest, explained = await stream_measured()
        if longest <= 50 and all(cpu <= 50 for _, cpu in explained):
            break
    assert longest <= 50, f"a task did {longest:.1f} ms of work (3 streams)"
    assert all(cpu <= 50 for _, cpu in explained), explained
