"""Anthropic Messages behind ``ChatProvider``: the request's options and the stream's events.

What a request carries besides its content (``anthropic_messages``): ``max_tokens``
(required by the API; the model's ceiling bounds it), extended thinking when the model
(or the request) has a budget for it, and the cache points when prompt caching is on.
The stream's thinking arrives as ``thinking_delta``s (yielded as ``ReasoningChunk``) and
one ``signature_delta`` per block; ``redacted_thinking`` blocks arrive whole. The round's
blocks, signed, end up in ``StreamFinished.reasoning`` for the next tool-use round.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import anthropic
from anthropic.types import (
    InputJSONDelta,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
    RedactedThinkingBlock,
    SignatureDelta,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolUseBlock,
)

from aichat_backend.providers.anthropic_messages import (
    FAMILY,
    continues_tool_use,
    returnable,
    to_anthropic_messages,
    to_anthropic_tool,
)
from aichat_backend.providers.base import (
    MIN_THINKING_BUDGET,
    ModelOptions,
    ProviderEvent,
    ProviderRequest,
    ReasoningBlock,
    ReasoningChunk,
    StreamFinished,
    TextChunk,
    ToolCallRequest,
    ToolCallsReady,
)
from aichat_backend.providers.errors import SDK_ERRORS as _COMMON_SDK_ERRORS
from aichat_backend.providers.errors import stream_interrupted, translate_error
from aichat_backend.providers.sdk_stream import SdkEvents, stall_seconds, without_read_timeout
from aichat_backend.providers.tool_arguments import parse_arguments

SDK_ERRORS: tuple[type[BaseException], ...] = (*_COMMON_SDK_ERRORS, anthropic.AnthropicError)

# Anthropic requires max_tokens on every request: the answer's limit when none is asked.
DEFAULT_MAX_TOKENS = 4096
MIN_ANSWER_TOKENS = 1024  # left for the answer when a thinking budget meets the ceiling

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


@dataclass(frozen=True, slots=True)
class _Budget:
    max_tokens: int
    thinking: int  # 0: thinking off for this request


class AnthropicProvider:
    """Streams messages through an injected ``anthropic.AsyncAnthropic`` client."""

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        name: str = "anthropic",
        *,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        options: ModelOptions | None = None,
    ) -> None:
        self._client = client
        self._name = name
        self._default_max_tokens = default_max_tokens
        self._options = options or ModelOptions()
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
    # ``request.reasoning_effort`` is OpenAI's and not sent either.
    def stream(
        self, request: ProviderRequest
    ) -> SdkEvents[anthropic.AsyncStream[RawMessageStreamEvent]]:
        return SdkEvents(self._open, request, self._events, self._name, self._stall)

    def _budget(self, request: ProviderRequest) -> _Budget:
        """``max_tokens`` and the thinking budget: the answer's limit plus the thinking
        budget (the API counts thinking in ``max_tokens``), within the model's ceiling."""
        thinking = request.thinking_budget_tokens
        if thinking is None:
            thinking = self._options.thinking_budget_tokens
        elif thinking > 0:
            thinking = max(thinking, MIN_THINKING_BUDGET)
        answered = continues_tool_use(request.messages)
        if thinking and answered is not None and not returnable(answered.reasoning):
            # The API refuses a tool-use round with thinking on unless the message that
            # made the calls starts with its thinking blocks: a caller that kept none
            # (or a round another provider answered) gets a round without thinking.
            thinking = 0
        answer = request.max_output_tokens or self._default_max_tokens
        ceiling = self._options.max_output_tokens
        max_tokens = answer + thinking
        if ceiling is not None:
            max_tokens = min(max_tokens, ceiling)
            if thinking:
                thinking = min(thinking, max_tokens - MIN_ANSWER_TOKENS)
                if thinking < MIN_THINKING_BUDGET:
                    thinking, max_tokens = 0, min(answer, ceiling)
        return _Budget(max_tokens, max(thinking, 0))

    async def _open(self, request: ProviderRequest) -> anthropic.AsyncStream[RawMessageStreamEvent]:
        budget = self._budget(request)
        system, messages = to_anthropic_messages(
            request.system_prompt,
            request.messages,
            send_reasoning=budget.thinking > 0,
            cache=self._options.prompt_caching,
        )
        try:
            return await self._client.messages.create(
                model=request.model,
                max_tokens=budget.max_tokens,
                messages=messages,
                system=system or anthropic.omit,
                tools=[to_anthropic_tool(t) for t in request.tools]
                if request.tools
                else anthropic.omit,
                thinking={"type": "enabled", "budget_tokens": budget.thinking}
                if budget.thinking
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
        thoughts: dict[int, _PartialThought] = {}
        stop_reason: str | None = None
        finished = False
        usage = _Usage()
        try:
            async for event in stream:
                if isinstance(event, RawContentBlockDeltaEvent):
                    delta = event.delta
                    if isinstance(delta, TextDelta):
                        if delta.text:
                            yield TextChunk(delta.text)
                    elif isinstance(delta, InputJSONDelta) and event.index in calls:
                        calls[event.index].json_parts.append(delta.partial_json)
                    elif isinstance(delta, ThinkingDelta) and event.index in thoughts:
                        if delta.thinking:
                            thoughts[event.index].parts.append(delta.thinking)
                            yield ReasoningChunk(delta.thinking)
                    elif isinstance(delta, SignatureDelta) and event.index in thoughts:
                        thoughts[event.index].signature += delta.signature
                    # citations deltas are not part of the answer.
                elif isinstance(event, RawContentBlockStartEvent):
                    block = event.content_block
                    if isinstance(block, ToolUseBlock):
                        calls[event.index] = _PartialToolUse(block.id, block.name, block.input)
                    elif isinstance(block, TextBlock) and block.text:
                        yield TextChunk(block.text)
                    elif isinstance(block, ThinkingBlock):
                        thought = _PartialThought(signature=block.signature or "")
                        thoughts[event.index] = thought
                        if block.thinking:
                            thought.parts.append(block.thinking)
                            yield ReasoningChunk(block.thinking)
                    elif isinstance(block, RedactedThinkingBlock):
                        thoughts[event.index] = _PartialThought(redacted=block.data)
                elif isinstance(event, RawMessageStartEvent):
                    usage.read(event.message.usage)
                elif isinstance(event, RawMessageDeltaEvent):
                    stop_reason = event.delta.stop_reason or stop_reason
                    usage.read(event.usage)
                elif isinstance(event, RawMessageStopEvent):
                    finished = True
        except SDK_ERRORS as exc:
            raise translate_error(exc, provider=self._name, mid_stream=True) from exc
        if not finished:
            raise stream_interrupted(self._name)
        if calls:
            yield ToolCallsReady(tuple(calls[i].assemble() for i in sorted(calls)))
        finish_reason = _FINISH_REASONS.get(stop_reason or "end_turn", stop_reason or "stop")
        yield StreamFinished(
            finish_reason,
            input_tokens=usage.fresh + usage.cache_read + usage.cache_write,
            output_tokens=usage.output,
            reasoning_tokens=usage.thinking,
            cached_input_tokens=usage.cache_read,
            cache_write_tokens=usage.cache_write,
            reasoning=tuple(thoughts[i].block() for i in sorted(thoughts)),
        )


@dataclass
class _Usage:
    """Anthropic's usage, split three ways when caching is on: ``input_tokens`` is only
    what came after the last cache point; reads and writes are counted apart. The
    message_delta's counts are cumulative and, when present, replace message_start's."""

    fresh: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0
    thinking: int = 0

    def read(self, usage: Any) -> None:
        if usage.input_tokens is not None:
            self.fresh = usage.input_tokens
        if usage.cache_read_input_tokens is not None:
            self.cache_read = usage.cache_read_input_tokens
        if usage.cache_creation_input_tokens is not None:
            self.cache_write = usage.cache_creation_input_tokens
        self.output = usage.output_tokens
        details = usage.output_tokens_details
        if details is not None:
            self.thinking = details.thinking_tokens


@dataclass
class _PartialThought:
    parts: list[str] = field(default_factory=list)
    signature: str = ""
    redacted: str | None = None  # a redacted block's data

    def block(self) -> ReasoningBlock:
        if self.redacted is not None:
            return ReasoningBlock(FAMILY, redacted=True, data=self.redacted)
        return ReasoningBlock(FAMILY, text="".join(self.parts), signature=self.signature)


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
