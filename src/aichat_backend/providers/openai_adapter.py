"""OpenAI Chat Completions (and every OpenAI-compatible server) behind ``ChatProvider``."""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
from openai.types.chat import (
    ChatCompletionContentPartParam,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)

from aichat_backend.providers import openai_sse
from aichat_backend.providers.base import (
    ChatMessage,
    ChatRole,
    ImagePart,
    MaxTokensParam,
    ModelOptions,
    ProviderEvent,
    ProviderRequest,
    ReasoningBlock,
    ReasoningChunk,
    StreamFinished,
    TextChunk,
    ToolCallRequest,
    ToolCallsReady,
    ToolSpec,
)
from aichat_backend.providers.errors import SDK_ERRORS, stream_interrupted, translate_error
from aichat_backend.providers.sdk_stream import SdkEvents, stall_seconds, without_read_timeout
from aichat_backend.providers.tool_arguments import arguments_json, parse_arguments

# OpenAI deprecated ``max_tokens`` (its reasoning models reject it) but many
# OpenAI-compatible servers only know ``max_tokens``: the catalogue picks per provider.


class OpenAIProvider:
    """Streams chat completions through an injected ``openai.AsyncOpenAI`` client."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        name: str = "openai",
        *,
        max_tokens_param: MaxTokensParam = "max_completion_tokens",
        options: ModelOptions | None = None,
    ) -> None:
        self._client = client
        self._name = name
        self._max_tokens_param = max_tokens_param
        self._options = options or ModelOptions()
        self._stall = stall_seconds(client.timeout)
        self._stream_timeout = without_read_timeout(self._stall)

    @property
    def name(self) -> str:
        return self._name

    async def aclose(self) -> None:
        """Close the client's connection pool (the catalogue does, at shutdown)."""
        await self._client.close()

    def stream(self, request: ProviderRequest) -> SdkEvents[openai.AsyncStream[Any]]:
        return SdkEvents(
            self._open, request, self._events, self._name, self._stall, _response_chunks
        )

    async def _open(self, request: ProviderRequest) -> openai.AsyncStream[Any]:
        limit = request.max_output_tokens
        ceiling = self._options.max_output_tokens
        if limit is not None and ceiling is not None:
            limit = min(limit, ceiling)  # past it the provider answers 400
        effort = request.reasoning_effort or self._options.reasoning_effort
        body: dict[str, Any] = {
            "model": request.model,
            "messages": to_openai_messages(request.system_prompt, request.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = [to_openai_tool(t) for t in request.tools]
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if limit is not None:
            body[self._max_tokens_param] = limit
        if effort:
            body["reasoning_effort"] = effort
        if request.stop:
            body["stop"] = list(request.stop)
        if request.end_user:
            body["user"] = request.end_user
        try:
            # The SDK's own `chat.completions.create` walks every parameter through its
            # TypedDict transform (~3 ms a request) and builds a pydantic model per chunk
            # (~0.3 ms each: most of our CPU per token, measured with cProfile). Our body
            # is plain JSON already and we read four fields of each chunk, so we post it
            # through the same client (same retries, errors, auth) and read the chunks
            # from its response ourselves (``openai_sse``).
            return await self._client.post(
                "/chat/completions",
                body=body,
                cast_to=object,
                stream=True,
                stream_cls=openai.AsyncStream[object],
                options={"timeout": self._stream_timeout},  # SdkEvents watches for stalls
            )
        except SDK_ERRORS as exc:
            raise translate_error(exc, provider=self._name, mid_stream=False) from exc

    async def _events(self, chunks: AsyncIterator[Any]) -> AsyncGenerator[ProviderEvent, None]:
        calls: dict[int, _PartialCall] = {}
        finish_reason: str | None = None
        usage: dict[str, Any] = {}
        reasoning: list[str] = []
        try:
            async for chunk in chunks:
                if not isinstance(chunk, dict):
                    continue
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or ():
                    if choice.get("index", 0) != 0:
                        continue
                    delta = choice.get("delta") or {}
                    content = delta.get("content")
                    # A text token's delta holds its content alone: the reasoning fields
                    # are looked for only in the others (a dict lookup less per token).
                    if len(delta) > 1 or not content:
                        # DeepSeek, vLLM and SGLang say reasoning_content; Ollama,
                        # OpenRouter and newer vLLM say reasoning (one of them is read).
                        thought = delta.get("reasoning_content") or delta.get("reasoning")
                        if thought and isinstance(thought, str):
                            reasoning.append(thought)
                            yield ReasoningChunk(thought)
                    if content:
                        yield TextChunk(content)
                    for call_delta in delta.get("tool_calls") or ():
                        call = calls.setdefault(call_delta.get("index", 0), _PartialCall())
                        call.id = call.id or call_delta.get("id") or ""
                        function = call_delta.get("function")
                        if function:
                            call.name = call.name or function.get("name") or ""
                            call.arguments += function.get("arguments") or ""
                    if choice.get("finish_reason") is not None:
                        finish_reason = choice["finish_reason"]
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
        yield _finished(finish_reason, usage, reasoning)


def _finished(finish_reason: str, usage: dict[str, Any], reasoning: list[str]) -> StreamFinished:
    """The last event: the usage chunk's counts, with what OpenAI says was cached or
    spent on reasoning (DeepSeek reports its cache hits at the top level instead)."""
    prompt_details = usage.get("prompt_tokens_details") or {}
    output_details = usage.get("completion_tokens_details") or {}
    cached = prompt_details.get("cached_tokens") or usage.get("prompt_cache_hit_tokens") or 0
    return StreamFinished(
        finish_reason,
        input_tokens=usage.get("prompt_tokens") or 0,
        output_tokens=usage.get("completion_tokens") or 0,
        reasoning_tokens=output_details.get("reasoning_tokens") or 0,
        cached_input_tokens=cached,
        reasoning=(ReasoningBlock("openai", text="".join(reasoning)),) if reasoning else (),
    )


def _response_chunks(stream: openai.AsyncStream[Any]) -> AsyncIterator[Any]:
    return openai_sse.chunks(stream.response)


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
