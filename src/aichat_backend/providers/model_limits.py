"""How much a model reads and writes: its context window and its longest answer.

The catalogue file may say both per model; where it does not, the values come from the
table of well-known models below (by the provider's model id), else from a conservative
default. Ollama is the exception: it serves every model with its own context length
(``num_ctx``, 4096 by default, or ``OLLAMA_CONTEXT_LENGTH``) whatever the model was
trained for, and silently cuts what does not fit, so its entries get that default
unless the file says otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelLimits:
    context_window: int  # tokens of one request, input and output together
    max_output_tokens: int  # tokens of one answer, reasoning included


# For a model nobody told us about: small enough for any chat model in use today.
UNKNOWN_MODEL = ModelLimits(8_192, 2_048)
OLLAMA_DEFAULT = ModelLimits(4_096, 2_048)

# (model id prefix, context window, max output), ids normalised as ``_normalise`` does:
# lower case, the last path segment (``openai/gpt-4o`` on OpenRouter), dots and
# underscores as dashes. The longest prefix that ends at a separator wins, so
# ``gpt-4-1106-preview`` is not ``gpt-4.1`` and ``o3-mini`` is ``o3``.
_KNOWN: tuple[tuple[str, int, int], ...] = (
    # OpenAI
    ("gpt-5", 400_000, 128_000),
    ("gpt-4-1", 1_047_576, 32_768),
    ("gpt-4o", 128_000, 16_384),
    ("chatgpt-4o", 128_000, 16_384),
    ("gpt-4-5", 128_000, 16_384),
    ("gpt-4-turbo", 128_000, 4_096),
    ("gpt-4-1106", 128_000, 4_096),
    ("gpt-4-0125", 128_000, 4_096),
    ("gpt-4", 8_192, 8_192),
    ("gpt-3-5-turbo", 16_385, 4_096),
    ("o1", 200_000, 100_000),
    ("o1-mini", 128_000, 65_536),
    ("o1-preview", 128_000, 32_768),
    ("o3", 200_000, 100_000),
    ("o4-mini", 200_000, 100_000),
    ("gpt-oss", 131_072, 32_768),
    # Anthropic
    ("claude-3-haiku", 200_000, 4_096),
    ("claude-3-sonnet", 200_000, 4_096),
    ("claude-3-opus", 200_000, 4_096),
    ("claude-3-5-sonnet", 200_000, 8_192),
    ("claude-3-5-haiku", 200_000, 8_192),
    ("claude-3-7-sonnet", 200_000, 64_000),
    ("claude-sonnet-4", 200_000, 64_000),
    ("claude-opus-4", 200_000, 32_000),
    ("claude-opus-4-5", 200_000, 64_000),
    ("claude-haiku-4-5", 200_000, 64_000),
    # Google, through its OpenAI-compatible endpoint
    ("gemini-1-5-pro", 2_097_152, 8_192),
    ("gemini-1-5-flash", 1_048_576, 8_192),
    ("gemini-2-0-flash", 1_048_576, 8_192),
    ("gemini-2-5", 1_048_576, 65_536),
    # DeepSeek's API and open weights
    ("deepseek-chat", 128_000, 8_192),
    ("deepseek-reasoner", 128_000, 65_536),
    ("deepseek-r1", 131_072, 32_768),
    ("deepseek-v3", 131_072, 8_192),
    # Open models as vLLM, OpenRouter and others serve them
    ("llama3", 8_192, 4_096),
    ("llama-3", 8_192, 4_096),
    ("meta-llama-3", 8_192, 4_096),
    *(
        (f"{prefix}{minor}", 131_072, 8_192)
        for prefix in ("llama3-", "llama-3-", "meta-llama-3-")
        for minor in ("1", "2", "3")
    ),
    ("mistral", 32_768, 8_192),
    ("mixtral", 32_768, 8_192),
    ("qwen2-5", 32_768, 8_192),
    ("qwen3", 32_768, 8_192),
    ("gemma-2", 8_192, 4_096),
    ("gemma2", 8_192, 4_096),
    ("gemma-3", 131_072, 8_192),
    ("gemma3", 131_072, 8_192),
    ("phi-4", 16_384, 4_096),
    ("phi4", 16_384, 4_096),
)
_TABLE = {prefix: ModelLimits(window, output) for prefix, window, output in _KNOWN}
_SEPARATOR = re.compile(r"[-:@]")


def _normalise(model_name: str) -> str:
    return re.sub(r"[._ ]", "-", model_name.strip().lower().rsplit("/", 1)[-1])


def known_limits(model_name: str) -> ModelLimits | None:
    """The table's limits for a provider model id, or None when it is not known."""
    name = _normalise(model_name)
    matches = [
        prefix
        for prefix in _TABLE
        if name.startswith(prefix)
        and (len(name) == len(prefix) or _SEPARATOR.match(name, len(prefix)))
    ]
    return _TABLE[max(matches, key=len)] if matches else None


def default_limits(provider: str, model_name: str) -> ModelLimits:
    """What an entry gets for what its catalogue entry does not say."""
    if provider == "ollama":
        return OLLAMA_DEFAULT
    return known_limits(model_name) or UNKNOWN_MODEL


def resolve_limits(
    provider: str,
    model_name: str,
    context_window: int | None,
    max_output_tokens: int | None,
) -> ModelLimits:
    """The entry's limits: what it says, the rest from ``default_limits``.

    A default answer limit is never more than half the window, so a window set small in
    the file (a 4,096-token deployment of a model known for more) still leaves room for
    the input. A limit the file sets larger than the window is an error.
    """
    defaults = default_limits(provider, model_name)
    window = context_window or defaults.context_window
    if max_output_tokens is None:
        output = min(defaults.max_output_tokens, max(1, window // 2))
    elif max_output_tokens > window:
        raise ValueError(
            f"max_output_tokens ({max_output_tokens}) is larger than the context window ({window})"
        )
    else:
        output = max_output_tokens
    return ModelLimits(window, output)
