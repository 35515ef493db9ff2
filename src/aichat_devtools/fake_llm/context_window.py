"""A model's context window, refused past as each server refuses it (status and body).

The OpenAI wire is spoken by several servers, each with its own wording (the style):
``openai`` (code ``context_length_exceeded``), ``vllm`` (its older unwrapped error
object), ``ollama`` (no sizes) and ``llama.cpp`` (sizes in the body as well). OpenAI
and vLLM count the answer's limit against the window, Ollama and llama.cpp the input
alone; Anthropic counts both, with two wordings.
"""

from __future__ import annotations

from typing import Any, Literal

OpenAIContextStyle = Literal["openai", "vllm", "ollama", "llama.cpp"]


def openai_refusal(
    style: OpenAIContextStyle, window: int, tokens: int, max_tokens: int | None
) -> tuple[int, dict[str, Any]] | None:
    requested = tokens + (max_tokens or 0)
    counts_answer = style in ("openai", "vllm")
    if tokens <= window and not (counts_answer and requested > window):
        return None
    head = f"This model's maximum context length is {window} tokens. "
    if max_tokens is not None:
        asked = (
            f"However, you requested {requested} tokens ({tokens} in the messages, "
            f"{max_tokens} in the completion). Please reduce the length of the messages "
            "or completion."
        )
    elif style == "vllm":
        asked = (
            f"However, you requested {tokens} tokens in the messages, Please reduce the "
            "length of the messages."
        )
    else:
        asked = (
            f"However, your messages resulted in {tokens} tokens. Please reduce the "
            "length of the messages."
        )
    if style == "openai":
        error_body = {
            "message": head + asked,
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
        return 400, {"error": error_body}
    if style == "vllm":
        return 400, {
            "object": "error",
            "message": head + asked,
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        }
    if style == "ollama":
        error: dict[str, Any] = {
            "message": "the input length exceeds the context length",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
        return 400, {"error": error}
    return 400, {
        "error": {
            "code": 400,
            "message": f"request ({tokens} tokens) exceeds the available context size "
            f"({window} tokens), try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": tokens,
            "n_ctx": window,
        }
    }


def anthropic_refusal(window: int, tokens: int, max_tokens: int | None) -> str | None:
    if tokens > window:
        return f"prompt is too long: {tokens} tokens > {window} maximum"
    if max_tokens is not None and tokens + max_tokens > window:
        return (
            f"input length and `max_tokens` exceed context limit: {tokens} + {max_tokens} > "
            f"{window}, decrease input length or `max_tokens` and try again"
        )
    return None
