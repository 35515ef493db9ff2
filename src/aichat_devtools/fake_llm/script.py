"""The script model: what one request plays, and the pieces it streams.

A piece is one streamed delta (a text token or a fragment of tool-call arguments), the
unit both wire formats write and every ``*_after`` count of a :class:`Script` counts.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# (call id, function name, arguments); arguments given as a str are sent verbatim, so a
# script can play a model that emits broken JSON.
ToolCallScript = tuple[str, str, dict[str, Any] | str]

_WORDS = re.compile(r"\s*\S+\s*|\s+")


@dataclass
class Script:
    """What the fake upstream does for one request.

    A piece is one streamed delta: a text token or a fragment of tool-call arguments.
    ``cut_after``/``hang_after``/``error_after`` count pieces already sent.
    """

    tokens: list[str] | None = None
    # Used when ``tokens`` is None: split word by word, or into ``n_tokens`` pieces.
    text: str = ""
    n_tokens: int | None = None
    tool_calls: list[ToolCallScript] = field(default_factory=list)
    tool_args_chunk: int = 8  # characters of argument JSON per tool-call delta
    ttft: float = 0.0  # seconds before the first byte of the response
    token_delay: float = 0.0  # seconds between pieces
    # With True the 200 headers go out at once and the ttft delay follows them, as an
    # upstream that accepted the request but is slow to start generating.
    ttft_after_headers: bool = False
    error_status: int | None = None  # answer with this HTTP error instead of a reply
    error_message: str | None = None
    error_type: str | None = None  # overrides the type implied by the status
    retry_after: float | None = 1.0  # sent as retry-after with a 429
    error_after: int | None = None  # send an in-stream error event after N pieces
    cut_after: int | None = None  # drop the connection after N pieces (no terminator)
    hang_after: int | None = None  # go silent after N pieces, keeping the socket open
    # Pause after N pieces until ``gate`` is set (a test holds a turn mid-answer).
    gate_after: int | None = None
    gate: asyncio.Event | None = None
    delay_after_gate: float | None = None  # token_delay once the gate has opened
    input_tokens: int | None = None  # default: the request's count (``tokens``)
    output_tokens: int | None = None  # default: the pieces, reasoning counted as below
    finish_reason: str | None = None  # OpenAI vocabulary; default stop / tool_calls
    # Reasoning played before the answer, word by word: Anthropic ``thinking`` deltas
    # (only when the request turns thinking on, as the real API) followed by a
    # ``signature_delta``; on the OpenAI wire, deltas in ``reasoning_field``.
    reasoning: str = ""
    reasoning_field: str = "reasoning_content"  # or "reasoning" (Ollama, OpenRouter)
    redacted_thinking: int = 0  # Anthropic redacted_thinking blocks after the thinking
    # Reported reasoning tokens; default: the reasoning's count (``tokens``) plus
    # ``REDACTED_TOKENS`` per redacted block, as played.
    reasoning_tokens: int | None = None

    def text_tokens(self) -> list[str]:
        if self.tokens is not None:
            return list(self.tokens)
        if not self.text:
            return []
        if self.n_tokens:
            size = -(-len(self.text) // self.n_tokens)
            return [self.text[i : i + size] for i in range(0, len(self.text), size)]
        return _WORDS.findall(self.text)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None


DefaultBehaviour = Callable[[RecordedRequest], Script]


REDACTED_TOKENS = 32


@dataclass(frozen=True)
class Piece:
    text: str | None = None
    tool_index: int = 0
    tool_first: bool = False
    args: str = ""
    reasoning: str | None = None  # a delta of reasoning text
    redacted: int | None = None  # the index of a redacted thinking block

    @property
    def is_reasoning(self) -> bool:
        return self.reasoning is not None or self.redacted is not None


def pieces(script: Script) -> list[Piece]:
    """Reasoning first (its text, then the redacted blocks), then text, then tool calls."""
    pieces = [Piece(reasoning=word) for word in _WORDS.findall(script.reasoning)]
    pieces += [Piece(redacted=n) for n in range(script.redacted_thinking)]
    pieces += [Piece(text=token) for token in script.text_tokens()]
    step = max(1, script.tool_args_chunk)
    for index, (_call_id, _name, args) in enumerate(script.tool_calls):
        encoded = args if isinstance(args, str) else json.dumps(args)
        fragments = [encoded[i : i + step] for i in range(0, len(encoded), step)] or [""]
        pieces += [
            Piece(tool_index=index, tool_first=(n == 0), args=fragment)
            for n, fragment in enumerate(fragments)
        ]
    return pieces


def finish_reason(script: Script) -> str:
    return script.finish_reason or ("tool_calls" if script.tool_calls else "stop")
