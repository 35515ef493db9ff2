"""The Messages API's request content: system prompt, messages, thinking blocks, cache points.

Three rules of the API shape what is sent here:

- Tool results go back as ``tool_result`` blocks in a user message, the results of one
  multi-call round in the same message; system messages join the ``system`` prompt.
- With extended thinking on, a round that answers tool calls must send the assistant
  message that made them starting with its ``thinking`` / ``redacted_thinking`` blocks,
  byte for byte as they came (the API checks their signatures). Blocks of earlier turns
  are dropped by the API anyway; we send those of the current tool loop only (the
  assistant messages after the last user message).
- Prompt caching: a ``cache_control`` point caches everything before it (tools, system,
  messages, in that order). We mark the system prompt (stable across turns) and the last
  message before the new one, so each turn reads the conversation so far from the cache
  and writes only what the last round added.
"""

from __future__ import annotations

import base64
from typing import Any, cast

from anthropic.types import (
    Base64ImageSourceParam,
    ContentBlockParam,
    MessageParam,
    TextBlockParam,
    ToolParam,
    ToolResultBlockParam,
)

from aichat_backend.providers.base import ChatMessage, ChatRole, ReasoningBlock, ToolSpec

FAMILY = "anthropic"
_NOT_CACHE_POINTS = ("thinking", "redacted_thinking")


def to_anthropic_tool(tool: ToolSpec) -> ToolParam:
    return {
        "name": tool.name,
        "description": tool.description,
        "input_schema": tool.input_schema,
    }


def continues_tool_use(messages: tuple[ChatMessage, ...]) -> ChatMessage | None:
    """The assistant message whose tool calls this request answers, if it does."""
    if not messages or messages[-1].role is not ChatRole.TOOL:
        return None
    for message in reversed(messages):
        if message.role is ChatRole.ASSISTANT:
            return message if message.tool_calls else None
        if message.role is ChatRole.USER:
            return None
    return None


def returnable(blocks: tuple[ReasoningBlock, ...]) -> list[ReasoningBlock]:
    """The blocks the API takes back: Anthropic's own, signed or redacted as they came."""
    return [
        b
        for b in blocks
        if b.family == FAMILY and ((b.redacted and b.data) or (not b.redacted and b.signature))
    ]


def to_anthropic_messages(
    system_prompt: str,
    messages: tuple[ChatMessage, ...],
    *,
    send_reasoning: bool = False,
    cache: bool = False,
) -> tuple[str | list[TextBlockParam], list[MessageParam]]:
    """The ``system`` and ``messages`` of one request.

    ``send_reasoning``: the current tool loop's assistant messages start with their
    thinking blocks (thinking is on for this request). ``cache``: mark the cache points.
    """
    system_parts = [system_prompt] if system_prompt else []
    out: list[MessageParam] = []
    pending_results: list[ContentBlockParam] = []
    last_user = max((i for i, m in enumerate(messages) if m.role is ChatRole.USER), default=-1)

    def flush_results() -> None:
        if pending_results:
            out.append({"role": "user", "content": list(pending_results)})
            pending_results.clear()

    for index, message in enumerate(messages):
        if message.role is ChatRole.TOOL:
            pending_results.append(_tool_result(message))
            continue
        flush_results()
        if message.role is ChatRole.SYSTEM:
            if message.text:
                system_parts.append(message.text)
        elif message.role is ChatRole.ASSISTANT:
            blocks = _assistant_blocks(message, send_reasoning and index > last_user)
            if blocks:  # the API rejects an empty assistant turn
                out.append({"role": "assistant", "content": blocks})
        else:
            out.append({"role": "user", "content": _user_blocks(message)})
    flush_results()
    system = "\n\n".join(system_parts)
    if not cache:
        return system, out
    if len(out) >= 2:
        _mark_last_block(out[-2])
    if not system:
        return system, out
    return [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}], out


def _mark_last_block(message: MessageParam) -> None:
    """A cache point on the message's last block that may carry one (not a thinking
    block, not an empty text)."""
    content = message["content"]
    if isinstance(content, str):
        return
    for block in reversed(list(content)):
        raw = cast(dict[str, Any], block)
        if raw.get("type") in _NOT_CACHE_POINTS or (raw.get("type") == "text" and not raw["text"]):
            continue
        raw["cache_control"] = {"type": "ephemeral"}
        return


def _tool_result(message: ChatMessage) -> ToolResultBlockParam:
    block: ToolResultBlockParam = {"type": "tool_result", "tool_use_id": message.tool_call_id or ""}
    if message.text:
        block["content"] = message.text
    if message.is_error:
        block["is_error"] = True
    return block


def _assistant_blocks(message: ChatMessage, with_reasoning: bool) -> list[ContentBlockParam]:
    blocks: list[ContentBlockParam] = []
    if with_reasoning:
        for block in returnable(message.reasoning):
            if block.redacted:
                blocks.append({"type": "redacted_thinking", "data": block.data})
            else:
                blocks.append(
                    {"type": "thinking", "thinking": block.text, "signature": block.signature}
                )
    if message.text:
        blocks.append({"type": "text", "text": message.text})
    blocks += [
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        for call in message.tool_calls
    ]
    return blocks


def _user_blocks(message: ChatMessage) -> list[ContentBlockParam]:
    # Images before the text: Anthropic's guidance for the best answers about them.
    blocks: list[ContentBlockParam] = []
    for image in message.images:
        source = cast(
            Base64ImageSourceParam,
            {
                "type": "base64",
                "media_type": image.mime_type,
                "data": base64.b64encode(image.data).decode("ascii"),
            },
        )
        blocks.append({"type": "image", "source": source})
    if message.text or not blocks:
        text: TextBlockParam = {"type": "text", "text": message.text}
        blocks.append(text)
    return blocks
