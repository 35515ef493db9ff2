"""The model catalogue as the contract shows it, with each model's last check."""

from __future__ import annotations

from aichat.v1 import chat_service_pb2 as cpb
from google.protobuf import duration_pb2, timestamp_pb2

from aichat_backend.api.errors import to_status
from aichat_backend.api.money_pb import money_pb
from aichat_backend.providers.base import ModelEntry
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.providers.model_check import NOT_CHECKED, CheckResult, CheckState, ModelChecker
from aichat_backend.providers.pricing import ModelPrices

CHECK_STATE_TO_PB = {
    CheckState.NOT_CHECKED: cpb.MODEL_CHECK_STATE_NOT_CHECKED,
    CheckState.REACHABLE: cpb.MODEL_CHECK_STATE_REACHABLE,
    CheckState.FAILING: cpb.MODEL_CHECK_STATE_FAILING,
}


def check_to_pb(result: CheckResult) -> cpb.ModelCheck:
    out = cpb.ModelCheck(state=CHECK_STATE_TO_PB[result.state])
    if result.error is not None:
        out.error.CopyFrom(to_status(result.error))
    if result.state is not CheckState.NOT_CHECKED:
        out.check_time.CopyFrom(timestamp_pb2.Timestamp(seconds=int(result.check_time)))
        out.check_time.nanos = int((result.check_time % 1) * 1e9)
        out.latency.CopyFrom(duration_pb2.Duration())
        out.latency.FromNanoseconds(int(result.latency_seconds * 1e9))
    return out


def prices_to_pb(prices: ModelPrices) -> cpb.ModelPrices:
    out = cpb.ModelPrices(
        input_per_million_tokens=money_pb(prices.input, prices.currency),
        output_per_million_tokens=money_pb(prices.output, prices.currency),
    )
    if prices.cached_input is not None:
        out.cached_input_per_million_tokens.CopyFrom(money_pb(prices.cached_input, prices.currency))
    if prices.cache_write is not None:
        out.cache_write_per_million_tokens.CopyFrom(money_pb(prices.cache_write, prices.currency))
    return out


def model_to_pb(
    entry: ModelEntry, catalogue: ModelCatalogue, checker: ModelChecker | None
) -> cpb.Model:
    out = cpb.Model(
        name=entry.name,
        provider=entry.provider,
        model_name=entry.model_name,
        default=entry.name == catalogue.default_name,
        configured=catalogue.is_configured(entry.name),
        fallbacks=entry.fallbacks,
        check=check_to_pb(checker.result(entry.name) if checker is not None else NOT_CHECKED),
        context_window_tokens=entry.context_window or 0,
        max_output_tokens=entry.max_output_tokens or 0,
        reasoning=cpb.ModelReasoning(
            effort=entry.reasoning_effort or "",
            thinking_budget_tokens=entry.thinking_budget_tokens,
        ),
        prompt_caching=bool(entry.prompt_caching),
    )
    if entry.prices is not None:
        out.prices.CopyFrom(prices_to_pb(entry.prices))
    return out


def models_to_pb(catalogue: ModelCatalogue, checker: ModelChecker | None) -> list[cpb.Model]:
    return [model_to_pb(e, catalogue, checker) for e in catalogue.entries()]
