from __future__ import annotations

import grpc
from google.rpc import code_pb2, error_details_pb2

from aichat_backend.api.errors import GRPC_CODE, grpc_code_of, internal_status, to_status
from aichat_backend.errors import DOMAIN, ErrorKind, ResourceExhausted


def test_every_kind_maps_to_a_code_that_is_never_unknown() -> None:
    assert set(GRPC_CODE) == set(ErrorKind)
    assert grpc.StatusCode.UNKNOWN not in GRPC_CODE.values()


def test_status_carries_error_info_and_retry_info() -> None:
    exc = ResourceExhausted(
        "slow down", reason="RATE_LIMITED", retry_after=1.5, metadata={"limit": "5"}
    )
    status = to_status(exc, "rid-1")
    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    info = error_details_pb2.ErrorInfo()
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "RATE_LIMITED" and info.domain == DOMAIN
    assert dict(info.metadata) == {"limit": "5", "request_id": "rid-1"}
    assert status.details[1].Unpack(retry)
    assert retry.retry_delay.ToMilliseconds() == 1500


def test_internal_status_says_nothing_but_the_request_id() -> None:
    status = internal_status("rid-2")
    assert grpc_code_of(status) == grpc.StatusCode.INTERNAL
    assert "rid-2" in status.message
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "INTERNAL"
