"""What the fake upstream enforces and measures beyond playing a script.

Per request: the context window of its model (refused past it with the provider's own
status and error body: ``context_window``), Anthropic's thinking rules (``thinking``),
the prompt cache (``prompt_cache``) and the usage it reports, all counted by one rule
(``tokens``). The reasoning a script plays depends on the request too: Anthropic streams
thinking only when the request turns it on; OpenAI-compatible servers have no redacted
blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aichat_devtools.fake_llm.context_window import (
    OpenAIContextStyle,
    anthropic_refusal,
    openai_refusal,
)
from aichat_devtools.fake_llm.prompt_cache import PromptCache, TooManyCachePoints
from aichat_devtools.fake_llm.script import REDACTED_TOKENS, Piece, Script
from aichat_devtools.fake_llm.thinking import Signer, thinking_enabled, thinking_refusal
from aichat_devtools.fake_llm.tokens import (
    Unit,
    anthropic_units,
    count_text,
    openai_units,
    request_tokens,
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer the upstream gives instead of playing any script."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Metered:
    """The usage of one reply, as the fake reports it."""

    input_tokens: int  # all of it, cache reads and writes included
    output_tokens: int  # reasoning included
    reasoning_tokens: int = 0
    cache_read: int = 0
    cache_write: int = 0


@dataclass(frozen=True, slots=True)
class RequestView:
    anthropic: bool
    body: dict[str, Any]
    units: list[Unit]
    tokens: int

    @property
    def model(self) -> str:
        return str(self.body.get("model", "fake-model"))


class UpstreamRules:
    def __init__(
        self,
        *,
        context_windows: Mapping[str, int] | None = None,
        openai_context_style: OpenAIContextStyle = "openai",
        min_cache_tokens: int = 1024,
    ) -> None:
        self.context_windows = dict(context_windows or {})
        self.openai_context_style: OpenAIContextStyle = openai_context_style
        self.cache = PromptCache(min_cache_tokens)
        self.signer = Signer()

    def view(self, anthropic: bool, body: dict[str, Any]) -> RequestView:
        units = anthropic_units(body) if anthropic else openai_units(body)
        return RequestView(anthropic, body, units, request_tokens(units, not anthropic))

    def refusal(self, view: RequestView) -> Refusal | None:
        body = view.body
        if view.anthropic:
            message = thinking_refusal(body, self.signer)
            points = sum(u.cache_point for u in view.units)
            if message is None and points > 4:
                message = str(TooManyCachePoints(points))
            if message is not None:
                return Refusal(400, _anthropic_error(message))
        window = self.context_windows.get(view.model)
        if window is None:
            return None
        if view.anthropic:
            max_tokens = body.get("max_tokens")
            found = anthropic_refusal(window, view.tokens, _int(max_tokens))
            return Refusal(400, _anthropic_error(found)) if found else None
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        refused = openai_refusal(self.openai_context_style, window, view.tokens, _int(limit))
        return Refusal(*refused) if refused else None

    def played(self, view: RequestView, pieces: list[Piece]) -> list[Piece]:
        if view.anthropic:
            if thinking_enabled(view.body):
                return pieces
            return [p for p in pieces if not p.is_reasoning]
        return [p for p in pieces if p.redacted is None]

    def meter(self, view: RequestView, script: Script, played: list[Piece]) -> Metered:
        reasoning = script.reasoning_tokens
        if reasoning is None:
            reasoning = sum(
                count_text(p.reasoning) if p.reasoning is not None else REDACTED_TOKENS
                for p in played
                if p.is_reasoning
            )
        output = script.output_tokens
        if output is None:
            output = sum(not p.is_reasoning for p in played) + reasoning
        if script.input_tokens is not None:
            return Metered(script.input_tokens, output, reasoning)
        if view.anthropic:
            use = self.cache.anthropic(view.model, view.units)
            return Metered(view.tokens, output, reasoning, use.read, use.written)
        cached = self.cache.openai(view.model, view.units)
        return Metered(view.tokens, output, reasoning, cached)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _anthropic_error(message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
