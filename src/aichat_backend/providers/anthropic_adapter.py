"""Anthropic Messages behind ``ChatProvider``."""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import anthropic
from anthropic.types import (
    Base64ImageSourceParam,
    ContentBlockParam,
    InputJSONDelta,
    MessageParam,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
    TextBlock,
    TextBlockParam,
    TextDelta,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlock,
)

from aichat_backend.providers.base import (
    ChatMessage,
    ChatRole,
    ProviderEvent,
    ProviderRequest,
    StreamFinished,
    TextChunk,
    ToolCallRequest,
    ToolCallsReady,
    ToolSpec,
)
from aichat_backend.providers.errors import SDK_ERRORS as _COMMON_SDK_ERRORS
from aichat_backend.providers.errors import stream_interrupted, translate_error
from aichat_backend.providers.sdk_stream import SdkEvents, stall_seconds, without_read_timeout
from aichat_backend.providers.tool_arguments import parse_arguments

SDK_ERRORS: tuple[type[BaseException], ...] = (*_COMMON_SDK_ERRORS, anthropic.AnthropicError)

# Anthropic requires max_tokens on every request.
DEFAULT_MAX_TOKENS = 4096

# Anthropic's stop reasons in the engine's (OpenAI-derived) vocabulary.
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
    "pause_turn": "pause",
}


class AnthropicProvider:
    """Streams messages through an injected ``anthropic.AsyncAnthropic`` client."""

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        name: str = "anthropic",
        *,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        self._client = client
        self._name = name
        self._default_max_tokens = default_max_tokens
        self._stall = stall_seconds(client.timeout)
        self._stream_timeout = without_read_timeout(self._stall)

    @property
    def name(self) -> str:
        return self._name

    async def aclose(self) -> None:
        """Close the client's connection pool (the catalogue does, at shutdown)."""
        await self._client.close()

    # ``request.temperature`` is not sent: the Messages API of anthropic 2.x has no
    # sampling parameters (the SDK dropped ``temperature``), and sending it through
    # ``extra_body`` would turn a harmless preference into a 400 for every turn.
    def stream(
        self, request: ProviderRequest
    ) -> SdkEvents[anthropic.AsyncStream[RawMessageStreamEvent]]:
        return SdkEvents(self._open, request, self._events, self._name, self._stall)

    async def _open(self, request: ProviderRequest) -> anthropic.AsyncStream[RawMessageStreamEvent]:
        system, messages = to_anthropic_messages(request.system_prompt, request.messages)
        try:
            return await self._client.messages.create(
                model=request.model,
                max_tokens=request.max_output_tokens or self._default_max_tokens,
                messages=messages,
                system=system or anthropic.omit,
                tools=[to_anthropic_tool(t) for t in request.tools]
                if request.tools
                else anthropic.omit,
                stop_sequences=list(request.stop) if request.stop else anthropic.omit,
                metadata={"user_id": request.end_user} if request.end_user else anthropic.omit,
                stream=True,
                timeout=self._stream_timeout,  # SdkEvents watches for stalls
            )
        except SDK_ERRORS as exc:
            raise translate_error(exc, provider=self._name, mid_stream=False) from exc

    async def _events(
        self, stream: AsyncIterator[RawMessageStreamEvent]
    ) -> AsyncGenerator[ProviderEvent, None]:
        calls: dict[int, _PartialToolUse] = {}
        stop_reason: str | None = None
        finished = False
        input_tokens = output_tokens = 0
        try:
            async for event in stream:
                if isinstance(event, RawContentBlockDeltaEvent):
                    delta = event.delta
                    if isinstance(delta, TextDelta):
                        if delta.text:
                            yield TextChunk(delta.text)
                    elif isinstance(delta, InputJSONDelta) and event.index in calls:
                        calls[event.index].json_parts.append(delta.partial_json)
                    # thinking / signature / citations deltas are not part of the answer.
                elif isinstance(event, RawContentBlockStartEvent):
                    block = event.content_block
                    if isinstance(block, ToolUseBlock):
                        calls[event.index] = _PartialToolUse(block.id, block.name, block.input)
                    elif isinstance(block, TextBlock) and block.text:
                        yield TextChunk(block.text)
                elif isinstance(event, RawMessageStartEvent):
                    usage = event.message.usage
                    # Anthropic's total input is split three ways when caching is on.
                    input_tokens = (
                        usage.input_tokens
                        + (usage.cache_creation_input_tokens or 0)
                        + (usage.cache_read_input_tokens or 0)
                    )
                    output_tokens = usage.output_tokens
                elif isinstance(event, RawMessageDeltaEvent):
                    stop_reason = event.delta.stop_reason or stop_reason
                    output_tokens = event.usage.output_tokens
                    if event.usage.input_tokens is not None:
                        input_tokens = (
                            event.usage.input_tokens
                            + (event.usage.cache_creation_input_tokens or 0)
                            + (event.usage.cache_read_input_tokens or 0)
                        )
                elif isinstance(event, RawMessageStopEvent):
                    finished = True
        except SDK_ERRORS as exc:
            raise translate_error(exc, provider=self._name, mid_stream=True) from exc
        if not finished:
            raise stream_interrupted(self._name)
        if calls:
            yield ToolCallsReady(tuple(calls[i].assemble() for i in sorted(calls)))
        finish_reason = _FINISH_REASONS.get(stop_reason or "end_turn", stop_reason or "stop")
        yield StreamFinished(finish_reason, input_tokens=input_tokens, output_tokens=output_tokens)


@dataclass
class _PartialToolUse:
    id: str
    name: str
    start_input: object
    json_parts: list[str] = field(default_factory=list)

    def assemble(self) -> ToolCallRequest:
        if self.json_parts:
            arguments = parse_arguments("".join(self.json_parts))
        elif isinstance(self.start_input, dict):
            arguments = cast(dict[str, Any], self.start_input)
        else:
            arguments = {}
        return ToolCallRequest(id=self.id, name=self.name, arguments=arguments)


def to_anthropic_tool(tool: ToolSpec) -> ToolParam:
    return {
        "name": tool.name,
        "description": tool.description,
        "input_schema": tool.input_schema,
    }


def to_anthropic_messages(
    system_prompt: str, messages: tuple[ChatMessage, ...]
) -> tuple[str, list[MessageParam]]:
    """The ``system`` string and the ``messages`` list for one request.

    System messages found in the history join the system prompt (Messages has no system
    role in the list). Tool results go back as ``tool_result`` blocks in a user message,
    consecutive ones in the same message, as the API expects after a multi-call turn.
    """
    system_parts = [system_prompt] if system_prompt else []
    out: list[MessageParam] = []
    pending_results: list[ContentBlockParam] = []

    def flush_results() -> None:
        if pending_results:
            out.append({"role": "user", "content": list(pending_results)})
            pending_results.clear()

    for message in messages:
        if message.role is ChatRole.TOOL:
            pending_results.append(_tool_result(message))
            continue
        flush_results()
        if message.role is ChatRole.SYSTEM:
            if message.text:
                system_parts.append(message.text)
        elif message.role is ChatRole.ASSISTANT:
            blocks = _assistant_blocks(message)
            if blocks:  # the API rejects an empty assistant turn
                out.append({"role": "assistant", "content": blocks})
        else:
            out.append({"role": "user", "content": _user_blocks(message)})
    flush_results()
    return "\n\n".join(system_parts), out


def _tool_result(message: ChatMessage) -> ToolResultBlockParam:
    block: ToolResultBlockParam = {"type": "tool_result", "tool_use_id": message.tool_call_id or ""}
    if message.text:
        block["content"] = message.text
    if message.is_error:
        block["is_error"] = True
    return block


def _assistant_blocks(message: ChatMessage) -> list[ContentBlockParam]:
    blocks: list[ContentBlockParam] = []
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
