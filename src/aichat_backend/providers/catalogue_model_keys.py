"""The models file's per-model keys beyond reaching the model: limits, prices, reasoning.

::

    currency: EUR                     # top level, ISO 4217; USD when not given
    models:
      - name: claude
        provider: anthropic
        model_name: claude-sonnet-4-5
        context_window: 200000        # tokens in and out of one request
        max_output_tokens: 16000      # of one answer, reasoning included
        prices: {input: 3, cached_input: 0.30, cache_write: 3.75, output: 15}  # per 1M
        thinking: true                # Anthropic extended thinking …
        thinking_budget_tokens: 8000  # … with this budget (≥ 1024; 4096 by default)
        prompt_caching: false         # Anthropic cache points (AICHAT_ANTHROPIC_PROMPT_CACHING)
      - name: o4
        provider: openai
        model_name: o4-mini
        reasoning_effort: high        # OpenAI-compatible reasoning_effort

Types are checked here; what depends on the provider family (thinking is Anthropic's,
``reasoning_effort`` the OpenAI-compatible servers') is checked by the catalogue, for
entries from the environment too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from aichat_backend.providers.pricing import ModelPrices

OPTION_KEYS = {
    "context_window",
    "max_output_tokens",
    "prices",
    "reasoning_effort",
    "thinking",
    "thinking_budget_tokens",
    "prompt_caching",
}
DEFAULT_CURRENCY = "USD"
DEFAULT_THINKING_BUDGET = 4096
# OpenAI's values (and what Ollama, vLLM and OpenRouter accept); a typo would otherwise
# reach the provider as a 400 on every turn.
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_PRICE_KEYS = {"input", "cached_input", "cache_write", "output"}
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def parse_currency(document: Mapping[str, Any], source: str) -> str:
    currency = document.get("currency", DEFAULT_CURRENCY)
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise ValueError(f"{source}: 'currency' must be an ISO 4217 code such as USD or EUR")
    return currency


def parse_options(raw: Mapping[str, Any], where: str, currency: str) -> dict[str, Any]:
    """The ``ModelEntry`` fields the option keys of one entry set (absent keys: none)."""
    out: dict[str, Any] = {}
    for key in ("context_window", "max_output_tokens"):
        if raw.get(key) is not None:
            out[key] = _positive_int(raw[key], key, where)
    if raw.get("prices") is not None:
        out["prices"] = _prices(raw["prices"], where, currency)
    effort = raw.get("reasoning_effort")
    if effort is not None:
        if effort not in REASONING_EFFORTS:
            raise ValueError(
                f"{where}: 'reasoning_effort' must be one of {', '.join(REASONING_EFFORTS)}"
            )
        out["reasoning_effort"] = effort
    thinking = _optional_bool(raw, "thinking", where)
    budget = raw.get("thinking_budget_tokens")
    if budget is not None and not thinking:
        raise ValueError(f"{where}: 'thinking_budget_tokens' needs 'thinking: true'")
    if thinking:
        out["thinking_budget_tokens"] = (
            _positive_int(budget, "thinking_budget_tokens", where)
            if budget is not None
            else DEFAULT_THINKING_BUDGET
        )
    caching = _optional_bool(raw, "prompt_caching", where)
    if caching is not None:
        out["prompt_caching"] = caching
    return out


def _positive_int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{where}: {key!r} must be a positive whole number of tokens")
    return value


def _optional_bool(raw: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{where}: {key!r} must be true or false")
    return value


def _prices(value: Any, where: str, currency: str) -> ModelPrices:
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{where}: 'prices' must be a mapping of input, output, cached_input and "
            "cache_write (per million tokens)"
        )
    unknown = set(value) - _PRICE_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys in 'prices': {sorted(unknown)}")
    for required in ("input", "output"):
        if value.get(required) is None:
            raise ValueError(f"{where}: 'prices' needs {required!r} (per million tokens)")
    amounts = {key: _amount(value[key], key, where) for key in _PRICE_KEYS if key in value}
    return ModelPrices(
        currency=currency,
        input=amounts["input"],
        output=amounts["output"],
        cached_input=amounts.get("cached_input"),
        cache_write=amounts.get("cache_write"),
    )


def _amount(value: Any, key: str, where: str) -> Decimal:
    """A price as written: YAML's float 0.15 is read back from its text, not its binary."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{where}: price {key!r} must be a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{where}: price {key!r} must be a number") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{where}: price {key!r} must be zero or more")
    return amount
