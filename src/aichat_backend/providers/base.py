"""The provider contract: what the chat engine asks of any LLM family.

Plain dataclasses in, plain events out: no SDK type crosses this boundary, and every SDK
error is translated into an ``aichat_backend.errors`` error by the adapter that saw it.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

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
class ChatMessage:
    """One message of context, in provider-neutral form.

    ``role == TOOL`` carries a tool result: ``tool_call_id`` names the call and ``text``
    holds the result (``is_error`` marks a failed call). An assistant message may carry
    ``tool_calls`` alongside or instead of text. ``images`` go as image parts to providers
    that accept them.
    """

    role: ChatRole
    text: str = ""
    tool_calls: tuple[ToolCallRequest, ...] = ()
    tool_call_id: str | None = None
    is_error: bool = False
    images: tuple[ImagePart, ...] = ()


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
    max_output_tokens: int | None = None
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
class ToolCallsReady:
    """All tool calls of this response, fully assembled (arguments parsed)."""

    calls: tuple[ToolCallRequest, ...]


@dataclass(frozen=True, slots=True)
class StreamFinished:
    """Always the last event of a stream that ended normally."""

    finish_reason: str  # "stop", "tool_calls", "length", "content_filter", ...
    input_tokens: int = 0
    output_tokens: int = 0


ProviderEvent = TextChunk | ToolCallsReady | StreamFinished


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


@dataclass(slots=True)
class ModelEntry:
    """One entry of the model catalogue (``AICHAT_MODELS_FILE`` or the env default)."""

    name: str
    provider: str
    model_name: str
    base_url: str | None = None
    api_key: str | None = None
    fallbacks: list[str] = field(default_factory=list)
    temperature: float | None = None
