"""A provider's "your request does not fit the context window", as one typed error.

Every provider refuses an over-long request with a 400 of its own wording; the engine
needs to tell that refusal apart from any other bad input (it can shorten the context
and try again) and to know the sizes when the provider says them. The wordings read
here, each as the provider's own error body carries it:

- OpenAI: code ``context_length_exceeded``, "This model's maximum context length is
  8192 tokens. However, your messages resulted in 9000 tokens." (or "you requested 9100
  tokens (9000 in the messages, 100 in the completion)").
- vLLM: the same sentence as OpenAI's, in its own body (type ``BadRequestError``).
- Anthropic: "prompt is too long: 210000 tokens > 200000 maximum", or "input length and
  `max_tokens` exceed context limit: 198000 + 8192 > 200000, …".
- llama.cpp's server: type ``exceed_context_size_error``, "request (9412 tokens)
  exceeds the available context size (8192 tokens), …", with ``n_prompt_tokens`` and
  ``n_ctx`` in the body.
- Hugging Face TGI: "`inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000
  `inputs` tokens and 1000 `max_new_tokens`".
- Ollama: "the input length exceeds the context length" (no sizes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aichat_backend.errors import InvalidArgument
from aichat_backend.reasons import Reason

_SIZES: tuple[tuple[re.Pattern[str], tuple[str | None, ...]], ...] = (
    (
        re.compile(r"you requested (\d+) tokens \((\d+) in the messages, (\d+) in the completion"),
        (None, "input_tokens", "max_output_tokens"),
    ),
    (re.compile(r"maximum context length is (\d+) tokens"), ("context_window",)),
    (re.compile(r"(?:messages resulted in|you requested) (\d+) tokens"), ("input_tokens",)),
    (
        re.compile(r"prompt is too long: (\d+) tokens > (\d+)(?: maximum)?"),
        ("input_tokens", "context_window"),
    ),
    (
        re.compile(r"exceed context limit: (\d+) \+ (\d+) > (\d+)"),
        ("input_tokens", "max_output_tokens", "context_window"),
    ),
    (
        re.compile(r"request \((\d+) tokens\) exceeds the available context size \((\d+) tokens"),
        ("input_tokens", "context_window"),
    ),
    (
        re.compile(r"must be <= (\d+)\. Given: (\d+) `inputs` tokens and (\d+) `max_new_tokens`"),
        ("context_window", "input_tokens", "max_output_tokens"),
    ),
)
# Wordings that say the context is too long without sizes (or with ones read above).
_SAYS_SO = re.compile(
    r"context[ _](?:length|window|size|limit)|prompt is too long|input length exceeds"
    r"|`inputs` tokens \+ `max_new_tokens`",
    re.IGNORECASE,
)
_CODES = {"context_length_exceeded", "exceed_context_size_error"}


class ContextTooLong(InvalidArgument):
    """The provider refused the request as longer than the model's context window.

    The sizes are the provider's own count (None when it did not say them), also in
    ``metadata`` as strings for the ErrorInfo: ``input_tokens`` (the request's input),
    ``max_output_tokens`` (the answer limit it was asked for), ``context_window``.
    """

    default_reason = Reason.CONTEXT_TOO_LONG

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        input_tokens: int | None = None,
        max_output_tokens: int | None = None,
        context_window: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        meta = {"provider": provider, **(metadata or {})}
        for key, value in (
            ("input_tokens", input_tokens),
            ("max_output_tokens", max_output_tokens),
            ("context_window", context_window),
        ):
            if value is not None:
                meta[key] = str(value)
        super().__init__(message, reason=Reason.CONTEXT_TOO_LONG, metadata=meta)
        self.input_tokens = input_tokens
        self.max_output_tokens = max_output_tokens
        self.context_window = context_window


def context_too_long(
    message: str | None, body: object, provider: str, metadata: Mapping[str, str]
) -> ContextTooLong | None:
    """The typed error when an upstream 400's body says the context is too long."""
    error = _error_object(body)
    code, kind = error.get("code"), error.get("type")
    text = message or ""
    if not (code in _CODES or kind in _CODES or _SAYS_SO.search(text)):
        return None
    sizes: dict[str, int] = {}
    for pattern, names in _SIZES:
        found = pattern.search(text)
        if found:
            for name, value in zip(names, found.groups(), strict=True):
                if name is not None:
                    sizes.setdefault(name, int(value))
    for name, field in (("input_tokens", "n_prompt_tokens"), ("context_window", "n_ctx")):
        value = error.get(field)
        if isinstance(value, int) and not isinstance(value, bool):
            sizes.setdefault(name, value)
    said = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(sizes.items()))
    return ContextTooLong(
        "The conversation is longer than the model's context window"
        + (f" ({said})." if said else "."),
        provider=provider,
        metadata=metadata,
        **sizes,
    )


def _error_object(body: object) -> dict[str, Any]:
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return {}
