"""What the fake upstream plays when no script is queued: the demo's echo, fixed tokens."""

from __future__ import annotations

import itertools
import re
from typing import Any

from aichat_devtools.fake_llm.script import DefaultBehaviour, RecordedRequest, Script

# real model: "calculate <expr>" calls the calculator (read-only: runs at once), "add task
# <title>" calls add_task (asks for approval). Chat Completions request shape only.
DEMO_TOOL_COMMANDS = (("calculate ", "calculate", "expression"), ("add task ", "add_task", "title"))


def echo_behaviour(ttft: float = 0.0, token_delay: float = 0.0) -> DefaultBehaviour:
    """Reply ``Echo: <last user text>`` word by word (the demo's default)."""

    def script(request: RecordedRequest) -> Script:
        body = request.body if isinstance(request.body, dict) else {}
        messages = body.get("messages") or []
        last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
        if last.get("role") == "tool":
            content = str(last.get("content", ""))
            inner = re.search(r"<tool_output[^>]*>\n?(.*?)\n?</tool_output>", content, re.S)
            last = {"content": inner.group(1) if inner else content}
            return Script(
                text=f"The tool answered: {last.get('content', '')}",
                ttft=ttft,
                token_delay=token_delay,
            )
        text = last_user_text(body)
        offered = [
            t.get("function", {}).get("name", "")
            for t in body.get("tools") or []
            if isinstance(t, dict)
        ]
        for prefix, tool, argument in DEMO_TOOL_COMMANDS:
            name = next((n for n in offered if n.endswith("__" + tool)), None)
            if name and text.lower().startswith(prefix):
                call = (f"call_{len(messages)}", name, {argument: text[len(prefix) :].strip()})
                return Script(tool_calls=[call], ttft=ttft, token_delay=token_delay)
        return Script(text="Echo: " + text, ttft=ttft, token_delay=token_delay)

    return script


def fixed_tokens_behaviour(
    count: int, ttft: float = 0.0, token_delay: float = 0.0
) -> DefaultBehaviour:
    """Reply with ``count`` short word tokens whatever was asked (for benchmarks)."""
    words = ("lorem ", "ipsum ", "dolor ", "sit ", "amet ", "consectetur ", "adipiscing ")
    tokens = list(itertools.islice(itertools.cycle(words), count))

    def script(_request: RecordedRequest) -> Script:
        return Script(tokens=tokens, ttft=ttft, token_delay=token_delay)

    return script


def last_user_text(body: Any) -> str:
    """The text of the last user message, in either API's request shape."""
    if not isinstance(body, dict):
        return ""
    for message in reversed(body.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [
                part.get("text", "")
                for part in content
                if isinstance(part, dict) and part.get("type") == "text"
            ]
            if texts:
                return " ".join(texts)
    return ""
