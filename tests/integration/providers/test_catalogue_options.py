"""The catalogue's per-model limits, prices and reasoning options: parsed, checked,
defaulted, and handed to the adapters."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aichat_backend.providers.base import ModelEntry, ModelOptions
from aichat_backend.providers.catalogue import ModelCatalogue, parse_catalogue
from aichat_backend.providers.model_limits import OLLAMA_DEFAULT, UNKNOWN_MODEL, known_limits
from aichat_backend.providers.pricing import ModelPrices

pytestmark = pytest.mark.timeout(10)

FILE = """
currency: EUR
models:
  - name: claude
    provider: anthropic
    model_name: claude-sonnet-4-5-20250929
    api_key: k
    max_output_tokens: 16000
    prices: {input: 3, cached_input: 0.30, cache_write: 3.75, output: 15}
    thinking: true
    thinking_budget_tokens: 8000
  - name: o4
    provider: openai
    model_name: o4-mini
    api_key: k
    reasoning_effort: high
    prices: {input: "1.10", output: 4.40}
  - name: small
    provider: vllm
    model_name: meta-llama/Llama-3.1-8B-Instruct
    context_window: 4096
  - name: local
    provider: ollama
    model_name: llama3.1:8b
  - name: custom
    provider: openai-compatible
    base_url: http://localhost:9/v1
    model_name: house-model-v7
  - name: haiku
    provider: anthropic
    model_name: claude-3-5-haiku-latest
    api_key: k
    prompt_caching: false
"""


def test_every_model_knows_its_window_and_answer_ceiling() -> None:
    catalogue = parse_catalogue(FILE, {})
    limits = {e.name: (e.context_window, e.max_output_tokens) for e in catalogue.entries()}
    assert limits == {
        "claude": (200_000, 16_000),  # known window, the file's ceiling
        "o4": (200_000, 100_000),  # both known
        "small": (4096, 2048),  # the file's window; a default ceiling fits in it
        "local": (OLLAMA_DEFAULT.context_window, OLLAMA_DEFAULT.max_output_tokens),
        "custom": (UNKNOWN_MODEL.context_window, UNKNOWN_MODEL.max_output_tokens),
        "haiku": (200_000, 8192),
    }


def test_prices_are_exact_decimals_in_the_files_currency() -> None:
    catalogue = parse_catalogue(FILE, {})
    assert catalogue.get("claude").prices == ModelPrices(
        currency="EUR",
        input=Decimal("3"),
        output=Decimal("15"),
        cached_input=Decimal("0.30"),
        cache_write=Decimal("3.75"),
    )
    o4 = catalogue.get("o4").prices
    assert o4 is not None and (o4.input, o4.output, o4.cached_input) == (
        Decimal("1.10"),
        Decimal("4.40"),
        None,
    )
    assert catalogue.get("small").prices is None


def test_the_cost_of_a_call() -> None:
    prices = ModelPrices("USD", Decimal("3"), Decimal("15"), Decimal("0.3"), Decimal("3.75"))
    cost = prices.cost(
        input_tokens=10_000, cached_input_tokens=6_000, cache_write_tokens=3_000, output_tokens=500
    )
    # 1,000 fresh at 3, 6,000 cached at 0.3, 3,000 written at 3.75, 500 out at 15 (per 1M).
    assert cost == Decimal("0.02355")
    plain = ModelPrices("USD", Decimal("0.15"), Decimal("0.60"))
    assert plain.cost(input_tokens=1_000_000, output_tokens=1_000_000, cached_input_tokens=500) == (
        Decimal("0.75")
    )


def test_reasoning_options_reach_the_adapters() -> None:
    catalogue = parse_catalogue(FILE, {}, prompt_caching=True)
    assert catalogue.get("claude").options() == ModelOptions(
        max_output_tokens=16_000, thinking_budget_tokens=8000, prompt_caching=True
    )
    assert catalogue.get("haiku").options().prompt_caching is False  # the file says so
    assert catalogue.get("o4").options() == ModelOptions(
        max_output_tokens=100_000, reasoning_effort="high"
    )
    assert parse_catalogue(FILE, {}).get("claude").prompt_caching is False  # setting off


def test_thinking_defaults_its_budget() -> None:
    text = (
        "- {name: c, provider: anthropic, model_name: claude-opus-4-1, api_key: k, thinking: true}"
    )
    assert parse_catalogue(text, {}).get("c").thinking_budget_tokens == 4096


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        ("context_window: 0", "positive whole number"),
        ("max_output_tokens: 9000, context_window: 8000", "larger than the context window"),
        ("prices: {input: 1}", "needs 'output'"),
        ("prices: {input: -1, output: 1}", "zero or more"),
        ("prices: {input: 1, output: 1, fresh: 2}", "unknown keys in 'prices'"),
        ("prices: 3", "must be a mapping"),
        ("reasoning_effort: extreme", "must be one of"),
        ("thinking: yes-please", "true or false"),
        ("thinking_budget_tokens: 2000", "needs 'thinking: true'"),
        ("thinking: true, thinking_budget_tokens: 500", "at least 1024"),
        ("thinking: true, thinking_budget_tokens: 20000, max_output_tokens: 16000", "less than"),
    ],
)
def test_bad_option_values_name_the_model_and_key(extra: str, complaint: str) -> None:
    text = f"- {{name: c, provider: anthropic, model_name: claude-sonnet-4, api_key: k, {extra}}}"
    with pytest.raises(ValueError, match=complaint) as caught:
        parse_catalogue(text, {}, source="models.yml")
    assert "models.yml" in str(caught.value) and "'c'" in str(caught.value)


@pytest.mark.parametrize(
    ("provider", "extra", "complaint"),
    [
        ("openai", "thinking: true", "thinking is Anthropic's"),
        ("anthropic", "reasoning_effort: low", "reasoning_effort is for OpenAI-compatible"),
        ("vllm", "prompt_caching: true", "cache prompts by themselves"),
    ],
)
def test_options_of_the_other_family_are_refused(provider: str, extra: str, complaint: str) -> None:
    text = f"- {{name: c, provider: {provider}, model_name: x, api_key: k, {extra}}}"
    with pytest.raises(ValueError, match=complaint):
        parse_catalogue(text, {})


def test_a_bad_currency_is_refused() -> None:
    with pytest.raises(ValueError, match="ISO 4217"):
        parse_catalogue(
            "currency: euros\nmodels:\n  - {name: a, provider: openai, model_name: x}", {}
        )


def test_entries_from_the_environment_are_resolved_too() -> None:
    catalogue = ModelCatalogue(
        [ModelEntry(name="gpt-4o-mini", provider="openai", model_name="gpt-4o-mini")]
    )
    entry = catalogue.get("gpt-4o-mini")
    assert (entry.context_window, entry.max_output_tokens) == (128_000, 16_384)
    with pytest.raises(ValueError, match="thinking is Anthropic's"):
        ModelCatalogue([ModelEntry("m", "openai", "x", thinking_budget_tokens=2048)])


@pytest.mark.parametrize(
    ("model", "window"),
    [
        ("gpt-4o-mini-2024-07-18", 128_000),
        ("gpt-4.1-nano", 1_047_576),
        ("gpt-4-1106-preview", 128_000),  # not gpt-4.1's
        ("gpt-4-0613", 8192),
        ("o3-mini", 200_000),
        ("claude-3-5-sonnet-20241022", 200_000),
        ("anthropic/claude-3.5-haiku", 200_000),  # OpenRouter's spelling
        ("meta-llama/Meta-Llama-3.1-70B-Instruct", 131_072),
        ("meta-llama/Meta-Llama-3-8B-Instruct", 8192),
        ("qwen2.5-coder:32b", 32_768),
        ("deepseek-reasoner", 128_000),
    ],
)
def test_known_models(model: str, window: int) -> None:
    found = known_limits(model)
    assert found is not None and found.context_window == window


def test_unknown_models_are_not_guessed() -> None:
    assert known_limits("house-model-v7") is None
    assert known_limits("gpt-4x") is None  # a prefix must end at a separator
