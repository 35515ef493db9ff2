"""The one table from domain errors to ``google.rpc.Status`` (AIP-193).

Every status carries an ``ErrorInfo`` (reason, domain, metadata); rate and availability
errors add ``RetryInfo``; argument errors add ``BadRequest`` naming the field. An
unexpected exception becomes INTERNAL with a generic message and the request id: never
UNKNOWN, never exception text.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from aichat_backend.errors import DOMAIN, AichatError, ErrorKind
from aichat_backend.reasons import Reason

GRPC_CODE: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.CANCELLED: grpc.StatusCode.CANCELLED,
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.ABORTED: grpc.StatusCode.ABORTED,
    ErrorKind.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
}


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


# Statuses travel in trailers, which clients cap (16 KiB by default): keep them small.
MAX_MESSAGE_CHARS = 1024


def to_status(exc: AichatError, request_id: str = "") -> status_pb2.Status:
    code = GRPC_CODE[exc.kind]
    message = exc.message[:MAX_MESSAGE_CHARS]
    metadata = dict(exc.metadata)
    if request_id:
        metadata.setdefault("request_id", request_id)
    details = [
        _pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN, metadata=metadata))
    ]
    if exc.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(exc.retry_after * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    if exc.field:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=exc.field, description=message, reason=exc.reason
                        )
                    ]
                )
            )
        )
    if request_id:
        details.append(_pack(error_details_pb2.RequestInfo(request_id=request_id)))
    return status_pb2.Status(code=code.value[0], message=message, details=details)


def internal_status(request_id: str) -> status_pb2.Status:
    """For exceptions nobody planned for: say nothing about them but the request id."""
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error; quote request id {request_id} when reporting it",
        details=[
            _pack(
                error_details_pb2.ErrorInfo(
                    reason=Reason.INTERNAL, domain=DOMAIN, metadata={"request_id": request_id}
                )
            ),
            _pack(error_details_pb2.RequestInfo(request_id=request_id)),
        ],
    )


def grpc_code_of(status: status_pb2.Status) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == status.code:
            return code
    return grpc.StatusCode.INTERNAL
