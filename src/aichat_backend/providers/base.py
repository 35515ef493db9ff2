"""The provider contract: what the chat engine asks of any LLM family.

Plain dataclasses in, plain events out: no SDK type crosses this boundary, and every SDK
error is translated into an ``aichat_backend.errors`` error by the adapter that saw it.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from aichat_backend.providers.pricing import ModelPrices

# How an OpenAI-compatible endpoint names the output cap (OpenAI's newer models refuse
# max_tokens; many compatible servers know only max_tokens).
MaxTokensParam = Literal["max_completion_tokens", "max_tokens"]


class ChatRole(enum.Enum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


@dataclass(frozen=True, slots=True)
class ImagePart:
    mime_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A call the model asked for (or, in history, asked for earlier)."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReasoningBlock:
    """One block of a model's reasoning, kept exactly as the provider sent it.

    Anthropic's ``thinking`` blocks carry ``text`` and an opaque ``signature``; its
    ``redacted_thinking`` blocks carry only opaque ``data`` (``redacted``). Both must go
    back unchanged on a tool-use round, which the Anthropic adapter does for blocks whose
    ``family`` is ``anthropic``. OpenAI-compatible servers stream reasoning as plain text
    (``reasoning_content`` / ``reasoning``): one block with ``text`` alone, never sent
    back (DeepSeek refuses it in input).
    """

    family: str  # the provider family that produced it: "anthropic", "openai"
    text: str = ""
    signature: str = ""
    redacted: bool = False
    data: str = ""  # a redacted block's opaque content

    def to_json(self) -> dict[str, Any]:
        """A plain dict for storage; ``from_json`` gives back an equal block."""
        out: dict[str, Any] = {"family": self.family}
        if self.redacted:
            out.update(redacted=True, data=self.data)
        else:
            out["text"] = self.text
            if self.signature:
                out["signature"] = self.signature
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ReasoningBlock:
        return cls(
            family=str(raw.get("family", "")),
            text=str(raw.get("text", "")),
            signature=str(raw.get("signature", "")),
            redacted=bool(raw.get("redacted", False)),
            data=str(raw.get("data", "")),
        )


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of context, in provider-neutral form.

    ``role == TOOL`` carries a tool result: ``tool_call_id`` names the call and ``text``
    holds the result (``is_error`` marks a failed call). An assistant message may carry
    ``tool_calls`` alongside or instead of text, and the ``reasoning`` blocks its round
    produced (``StreamFinished.reasoning``), which a tool-use round must send back.
    ``images`` go as image parts to providers that accept them.
    """

    role: ChatRole
    text: str = ""
    tool_calls: tuple[ToolCallRequest, ...] = ()
    tool_call_id: str | None = None
    is_error: bool = False
    images: tuple[ImagePart, ...] = ()
    reasoning: tuple[ReasoningBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    system_prompt: str = ""
    tools: tuple[ToolSpec, ...] = ()
    temperature: float | None = None
    max_output_tokens: int | None = None  # the answer's limit; clamped to the model's
    # Per request, over the model's own setting (None: the model's). OpenAI-compatible
    # ``reasoning_effort``; Anthropic's thinking budget (0 turns thinking off; less than
    # ``MIN_THINKING_BUDGET`` is raised to it).
    reasoning_effort: str | None = None
    thinking_budget_tokens: int | None = None
    # Where the model stops generating (at most 4, as OpenAI allows), and the caller's
    # own end-user id, passed on for the provider's abuse monitoring: both come from the
    # OpenAI-compatible API, which honours them rather than drop them.
    stop: tuple[str, ...] = ()
    end_user: str = ""


# --- stream events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextChunk:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningChunk:
    """Reasoning text as it streams, before (or between) the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallsReady:
    """All tool calls of this response, fully assembled (arguments parsed)."""

    calls: tuple[ToolCallRequest, ...]


@dataclass(frozen=True, slots=True)
class StreamFinished:
    """Always the last event of a stream that ended normally."""

    finish_reason: str  # "stop", "tool_calls", "length", "content_filter", ...
    input_tokens: int = 0  # every input token, cached and cache-written ones included
    output_tokens: int = 0  # every output token, reasoning included
    # Parts of the totals above, as the provider reported them (0 when it did not).
    reasoning_tokens: int = 0  # of output_tokens
    cached_input_tokens: int = 0  # of input_tokens: read from the provider's cache
    cache_write_tokens: int = 0  # of input_tokens: written to it (Anthropic)
    # The round's reasoning, in order, to keep with the answer (``ChatMessage.reasoning``).
    reasoning: tuple[ReasoningBlock, ...] = ()


ProviderEvent = TextChunk | ReasoningChunk | ToolCallsReady | StreamFinished


class ChatProvider(Protocol):
    """One LLM family behind an injected SDK client."""

    @property
    def name(self) -> str:
        """The provider family, for logs and metrics ("openai", "anthropic")."""
        ...

    def stream(
        self, request: ProviderRequest
    ) -> AbstractAsyncContextManager[AsyncIterator[ProviderEvent]]:
        """Open one streamed completion.

        Used as ``async with provider.stream(req) as events: async for ev in events``.
        Leaving the ``async with`` (normally, by exception or by cancellation) closes the
        upstream HTTP stream at once. Errors, whether raised on open or mid-stream, are
        ``aichat_backend.errors.AichatError`` subclasses (see ``providers/errors.py``). An
        upstream that goes silent is stopped by cancelling the reading task, which leaving
        the ``async with`` turns into ``PROVIDER_TIMEOUT`` (``providers/sdk_stream.py``):
        pass the exception to ``__aexit__`` when leaving by hand.
        """
        ...


MIN_THINKING_BUDGET = 1024  # Anthropic refuses a smaller thinking budget


@dataclass(frozen=True, slots=True)
class ModelOptions:
    """What an adapter sends for one catalogue model, besides the request itself."""

    # The model's most output tokens: a request's limit is clamped to it.
    max_output_tokens: int | None = None
    reasoning_effort: str | None = None  # OpenAI-compatible ``reasoning_effort``
    thinking_budget_tokens: int = 0  # Anthropic extended thinking; 0: off
    prompt_caching: bool = False  # Anthropic ``cache_control`` points


@dataclass(slots=True)
class ModelEntry:
    """One entry of the model catalogue (``AICHAT_MODELS_FILE`` or the env default).

    The limits left None here are filled in by the catalogue (``model_limits``): every
    entry it hands out has its ``context_window`` and ``max_output_tokens``, and a bool
    ``prompt_caching``.
    """

    name: str
    provider: str
    model_name: str
    base_url: str | None = None
    api_key: str | None = None
    fallbacks: list[str] = field(default_factory=list)
    temperature: float | None = None
    context_window: int | None = None  # input and output tokens of one request
    max_output_tokens: int | None = None  # of one answer, reasoning included
    prices: ModelPrices | None = None
    reasoning_effort: str | None = None
    thinking_budget_tokens: int = 0
    prompt_caching: bool | None = None  # None: the server's default

    def options(self) -> ModelOptions:
        return ModelOptions(
            max_output_tokens=self.max_output_tokens,
            reasoning_effort=self.reasoning_effort,
            thinking_budget_tokens=self.thinking_budget_tokens,
            prompt_caching=bool(self.prompt_caching),
        )
