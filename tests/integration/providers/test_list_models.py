"""ListModels over a real gRPC server shows each model's window, answer ceiling, prices
and reasoning options, from a models file and from the environment alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from aichat.v1 import chat_service_pb2 as cpb
from google.protobuf import json_format

from aichat_backend.api.models_pb import money_pb
from tests.support.grpc_helpers import md
from tests.support.server import make_settings, running_server

pytestmark = pytest.mark.timeout(30)

MODELS = """
currency: EUR
default: claude
models:
  - name: claude
    provider: anthropic
    model_name: claude-sonnet-4-5
    api_key: k
    prices: {input: 3, cached_input: 0.30, cache_write: 3.75, output: 15}
    thinking: true
    thinking_budget_tokens: 8000
  - name: small
    provider: vllm
    model_name: house-model
    context_window: 4096
    max_output_tokens: 512
    reasoning_effort: low
"""


async def test_list_models_shows_limits_prices_and_reasoning(
    sqlite_url: str, tmp_path: Path, user: str
) -> None:
    path = tmp_path / "models.yml"
    path.write_text(MODELS)
    async with running_server(make_settings(sqlite_url, models_file=path)) as server:
        answer = await server.chat.ListModels(cpb.ListModelsRequest(), metadata=md(user))
    claude, small = answer.models
    assert (claude.context_window_tokens, claude.max_output_tokens) == (200_000, 64_000)
    assert claude.reasoning.thinking_budget_tokens == 8000 and not claude.reasoning.effort
    assert claude.prompt_caching  # AICHAT_ANTHROPIC_PROMPT_CACHING is on by default
    prices = json_format.MessageToDict(claude.prices)
    assert prices == {
        "inputPerMillionTokens": {"currencyCode": "EUR", "units": "3"},
        "cachedInputPerMillionTokens": {"currencyCode": "EUR", "nanos": 300_000_000},
        "cacheWritePerMillionTokens": {"currencyCode": "EUR", "units": "3", "nanos": 750_000_000},
        "outputPerMillionTokens": {"currencyCode": "EUR", "units": "15"},
    }
    assert (small.context_window_tokens, small.max_output_tokens) == (4096, 512)
    assert small.reasoning.effort == "low" and not small.prompt_caching
    assert not small.HasField("prices")


async def test_the_environment_model_knows_its_limits(sqlite_url: str, user: str) -> None:
    settings = make_settings(
        sqlite_url,
        llm_provider="anthropic",
        llm_model="claude-3-5-haiku-20241022",
        api_key="k",
        llm_thinking_budget_tokens=2048,
        anthropic_prompt_caching=False,
    )
    async with running_server(settings) as server:
        answer = await server.chat.ListModels(cpb.ListModelsRequest(), metadata=md(user))
    (model,) = answer.models
    assert (model.context_window_tokens, model.max_output_tokens) == (200_000, 8192)
    assert model.reasoning.thinking_budget_tokens == 2048 and not model.prompt_caching


def test_money_is_exact_to_the_nano() -> None:
    from decimal import Decimal

    assert money_pb(Decimal("0.075"), "USD").nanos == 75_000_000
    rounded = money_pb(Decimal("1.0000000015"), "USD")
    assert (rounded.units, rounded.nanos) == (1, 2)
