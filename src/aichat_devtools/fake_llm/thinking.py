"""Anthropic extended thinking on the fake upstream: signed blocks, and the API's checks.

Every ``thinking`` block the fake streams is signed (an HMAC of its text under a key of
this server), every ``redacted_thinking`` block carries data only it can have made. A
request that sends a block back is refused, with the real API's status and wording,
when a signature or data is not the fake's own for that exact text, and, with thinking
on, when the assistant message whose tool calls the request answers does not start with
its thinking blocks. Bad thinking settings are refused as the API does too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
_THINKING_TYPES = ("thinking", "redacted_thinking")


class Signer:
    def __init__(self) -> None:
        self._key = os.urandom(32)

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def sign(self, text: str) -> str:
        # Real signatures are long opaque base64; so are these (any change breaks them).
        return base64.b64encode(b"fake-thinking-signature:" + self._mac(text.encode()) * 3).decode()

    def redacted_data(self, index: int) -> str:
        nonce = os.urandom(16) + index.to_bytes(4, "big")
        return base64.b64encode(b"fake-redacted:" + nonce + self._mac(nonce)).decode()

    def valid_signature(self, text: Any, signature: Any) -> bool:
        return (
            isinstance(text, str)
            and isinstance(signature, str)
            and hmac.compare_digest(signature, self.sign(text))
        )

    def valid_data(self, data: Any) -> bool:
        if not isinstance(data, str):
            return False
        try:
            raw = base64.b64decode(data, validate=True)
        except ValueError:
            return False
        prefix = b"fake-redacted:"
        nonce, mac = raw[len(prefix) : len(prefix) + 20], raw[len(prefix) + 20 :]
        return raw.startswith(prefix) and hmac.compare_digest(mac, self._mac(nonce))


def thinking_enabled(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"


def thinking_refusal(body: dict[str, Any], signer: Signer) -> str | None:
    """The API's 400 message for this request's thinking, or None when it passes."""
    enabled = thinking_enabled(body)
    if enabled:
        budget = body["thinking"].get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1024:
            return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or max_tokens <= budget:
            return (
                "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult "
                f"our documentation at {DOCS}#max-tokens-and-context-window-size"
            )
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    for n, message in enumerate(messages):
        content = message.get("content")
        for m, block in enumerate(content if isinstance(content, list) else []):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "thinking" and not signer.valid_signature(
                block.get("thinking"), block.get("signature")
            ):
                return f"messages.{n}.content.{m}: Invalid `signature` in `thinking` block"
            if kind == "redacted_thinking" and not signer.valid_data(block.get("data")):
                return f"messages.{n}.content.{m}: Invalid `data` in `redacted_thinking` block"
    if enabled:
        return _missing_thinking(messages)
    return None


def _missing_thinking(messages: list[dict[str, Any]]) -> str | None:
    """With thinking on, a request answering tool calls must send the message that made
    them starting with its thinking blocks."""
    if not messages or not _only_tool_results(messages[-1]):
        return None
    for n in range(len(messages) - 2, -1, -1):
        if messages[n].get("role") != "assistant":
            continue
        content = messages[n].get("content")
        blocks = content if isinstance(content, list) else [{"type": "text"}]
        first = blocks[0].get("type") if blocks and isinstance(blocks[0], dict) else "text"
        if first in _THINKING_TYPES:
            return None
        return (
            f"messages.{n}.content.0.type: Expected `thinking` or `redacted_thinking`, but "
            f"found `{first}`. When `thinking` is enabled, a final `assistant` message must "
            "start with a thinking block (preceeding the lastmost set of `tool_use` and "
            "`tool_result` blocks). We recommend you include thinking blocks from previous "
            "turns. To avoid this requirement, disable `thinking`. Please consult our "
            f"documentation at {DOCS}"
        )
    return None


def _only_tool_results(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return (
        message.get("role") == "user"
        and isinstance(content, list)
        and bool(content)
        and all(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
    )
