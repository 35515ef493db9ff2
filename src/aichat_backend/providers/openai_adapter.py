"""OpenAI Chat Completions (and every OpenAI-compatible server) behind ``ChatProvider``."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import openai
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionContentPartParam,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)

from aichat_backend.providers.base import (
    ChatMessage,
    ChatRole,
    ImagePart,
    ProviderEvent,
    ProviderRequest,
    StreamFinished,
    TextChunk,
    ToolCallRequest,
    ToolCallsReady,
    ToolSpec,
)
from aichat_backend.providers.errors import SDK_ERRORS, stream_interrupted, translate_error

# OpenAI deprecated ``max_tokens`` (its reasoning models reject it) but many
# OpenAI-compatible servers only know ``max_tokens``: the catalogue picks per provider.
MaxTokensParam = Literal["max_completion_tokens", "max_tokens"]


class OpenAIProvider:
    """Streams chat completions through an injected ``openai.AsyncOpenAI`` client."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        name: str = "openai",
        *,
        max_tokens_param: MaxTokensParam = "max_completion_tokens",
    ) -> None:
        self._client = client
        self._name = name
        self._max_tokens_param = max_tokens_param

    @property
    def name(self) -> str:
        return self._name

    async def aclose(self) -> None:
        """Close the client's connection pool (the catalogue does, at shutdown)."""
        await self._client.close()

    @asynccontextmanager
    async def stream(self, request: ProviderRequest) -> AsyncIterator[AsyncIterator[ProviderEvent]]:
        limit = request.max_output_tokens
        try:
            sdk_stream = await self._client.chat.completions.create(
                model=request.model,
                messages=to_openai_messages(request.system_prompt, request.messages),
                tools=[to_openai_tool(t) for t in request.tools] if request.tools else openai.omit,
                temperature=request.temperature if request.temperature is not None else openai.omit,
                max_completion_tokens=limit
                if limit is not None and self._max_tokens_param == "max_completion_tokens"
                else openai.omit,
                max_tokens=limit
                if limit is not None and self._max_tokens_param == "max_tokens"
                else openai.omit,
                stream=True,
                stream_options={"include_usage": True},
            )
        except SDK_ERRORS as exc:
            raise translate_error(exc, provider=self._name, mid_stream=False) from exc
        # The SDK stream's exit closes the HTTP response: leaving this block for any
        # reason, cancellation included, hangs up on the upstream at once.
        async with sdk_stream, aclosing(self._events(sdk_stream)) as events:
            yield events

    async def _events(
        self, chunks: openai.AsyncStream[ChatCompletionChunk]
    ) -> AsyncGenerator[ProviderEvent, None]:
        calls: dict[int, _PartialCall] = {}
        finish_reason: str | None = None
        input_tokens = output_tokens = 0
        try:
            async for chunk in chunks:
                if chunk.usage is not None:
                    input_tokens = chunk.usage.prompt_tokens
                    output_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    delta = choice.delta
                    if delta.content:
                        yield TextChunk(delta.content)
                    for call_delta in delta.tool_calls or ():
                        call = calls.setdefault(call_delta.index, _PartialCall())
                        call.id = call.id or call_delta.id or ""
                        if call_delta.function is not None:
                            call.name = call.name or call_delta.function.name or ""
                            call.arguments += call_delta.function.arguments or ""
                    if choice.finish_reason is not None:
                        finish_reason = choice.finish_reason
        except SDK_ERRORS as exc:
            raise translate_error(exc, provider=self._name, mid_stream=True) from exc
        if finish_reason is None:
            # The connection ended cleanly but the answer never said it was complete.
            raise stream_interrupted(self._name)
        if calls:
            yield ToolCallsReady(tuple(calls[i].assemble(i) for i in sorted(calls)))
            # Some compatible servers (older Ollama, vLLM parsers) say "stop" even when
            # the answer is tool calls; the engine switches on "tool_calls".
            if finish_reason in ("stop", "function_call"):
                finish_reason = "tool_calls"
        yield StreamFinished(finish_reason, input_tokens=input_tokens, output_tokens=output_tokens)


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: str = ""

    def assemble(self, index: int) -> ToolCallRequest:
        return ToolCallRequest(
            id=self.id or f"call_{index}",
            name=self.name,
            arguments=parse_arguments(self.arguments),
        )


def parse_arguments(raw: str) -> dict[str, Any]:
    """Tool arguments as a dict; JSON a model got wrong is kept as ``{"_raw": ...}``.

    The engine can then report the bad call back to the model instead of the turn
    failing on a parse error.
    """
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {"_raw": raw}
    return parsed if isinstance(parsed, dict) else {"_raw": raw}


def arguments_json(arguments: dict[str, Any]) -> str:
    """Inverse of :func:`parse_arguments`: unparseable arguments go back verbatim."""
    raw = arguments.get("_raw")
    if len(arguments) == 1 and isinstance(raw, str):
        return raw
    return json.dumps(arguments)


def to_openai_tool(tool: ToolSpec) -> ChatCompletionFunctionToolParam:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.input_schema,
        },
    }


def _data_url(image: ImagePart) -> str:
    return f"data:{image.mime_type};base64,{base64.b64encode(image.data).decode('ascii')}"


def to_openai_messages(
    system_prompt: str, messages: tuple[ChatMessage, ...]
) -> list[ChatCompletionMessageParam]:
    out: list[ChatCompletionMessageParam] = []
    if system_prompt:
        out.append({"role": "system", "content": system_prompt})
    for message in messages:
        out.append(_to_openai_message(message))
    return out


def _to_openai_message(message: ChatMessage) -> ChatCompletionMessageParam:
    if message.role is ChatRole.SYSTEM:
        return {"role": "system", "content": message.text}
    if message.role is ChatRole.TOOL:
        # Chat Completions has no error flag on tool results; say it in the content so
        # the model does not mistake an error text for data.
        text = f"Error: {message.text}" if message.is_error else message.text
        return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": text}
    if message.role is ChatRole.ASSISTANT:
        if not message.tool_calls:
            return {"role": "assistant", "content": message.text}
        tool_calls: list[ChatCompletionMessageFunctionToolCallParam] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": arguments_json(call.arguments)},
            }
            for call in message.tool_calls
        ]
        return {"role": "assistant", "content": message.text or None, "tool_calls": tool_calls}
    if not message.images:
        return {"role": "user", "content": message.text}
    parts: list[ChatCompletionContentPartParam] = []
    if message.text:
        parts.append({"type": "text", "text": message.text})
    parts += [{"type": "image_url", "image_url": {"url": _data_url(i)}} for i in message.images]
    return {"role": "user", "content": parts}
