"""The model catalogue as the contract shows it, with each model's last check."""

from __future__ import annotations

from aichat.v1 import chat_service_pb2 as cpb
from google.protobuf import duration_pb2, timestamp_pb2

from aichat_backend.api.errors import to_status
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.providers.model_check import NOT_CHECKED, CheckResult, CheckState, ModelChecker

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


def models_to_pb(catalogue: ModelCatalogue, checker: ModelChecker | None) -> list[cpb.Model]:
    return [
        cpb.Model(
            name=e.name,
            provider=e.provider,
            model_name=e.model_name,
            default=e.name == catalogue.default_name,
            configured=catalogue.is_configured(e.name),
            fallbacks=e.fallbacks,
            check=check_to_pb(checker.result(e.name) if checker is not None else NOT_CHECKED),
        )
        for e in catalogue.entries()
    ]
