"""Errors as OpenAI's API writes them, with the HTTP codes its SDKs map to exceptions.

``{"error": {"message", "type", "param", "code"}}``: the SDKs read the message from it and
choose the exception by status (400 BadRequestError, 401 AuthenticationError, 403
PermissionDeniedError, 404 NotFoundError, 409 ConflictError, 429 RateLimitError, ≥500
InternalServerError). ``code`` is OpenAI's own code where one means the same
(``model_not_found``, ``rate_limit_exceeded``, ``insufficient_quota``), else our ErrorInfo
reason in lower case. A wait that helps is sent as ``retry-after`` (whole seconds) and
``retry-after-ms``, which the SDKs' retry logic reads.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import partial

from aichat_backend.errors import AichatError, ErrorKind
from aichat_backend.reasons import Reason

HTTP_STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID_ARGUMENT: 400,
    ErrorKind.FAILED_PRECONDITION: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.PERMISSION_DENIED: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.ALREADY_EXISTS: 409,
    ErrorKind.ABORTED: 409,
    ErrorKind.RESOURCE_EXHAUSTED: 429,
    ErrorKind.CANCELLED: 499,
    ErrorKind.INTERNAL: 500,
    ErrorKind.UNIMPLEMENTED: 501,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.DEADLINE_EXCEEDED: 504,
}
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    429: "rate_limit_error",
}
_OPENAI_CODES = {
    Reason.MODEL_NOT_IN_CATALOGUE: "model_not_found",
    Reason.RATE_LIMITED: "rate_limit_exceeded",
    Reason.CONCURRENCY_LIMITED: "rate_limit_exceeded",
    Reason.TOKEN_BUDGET_EXHAUSTED: "insufficient_quota",
}
# Engine fields that OpenAI's request spells otherwise.
_PARAMS = {"text": "messages", "attachments": "messages", "session": None}

# Compact, as OpenAI writes it.
_dumps = partial(json.dumps, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class OpenAIError:
    status: int
    headers: dict[str, str]
    error: dict[str, object]  # the object under "error"

    def body(self) -> bytes:
        return _dumps({"error": self.error}).encode()

    def sse(self) -> bytes:
        """The error as a stream's last event (the SDKs raise APIError on it)."""
        return b"data: " + self.body() + b"\n\n"


def openai_error(exc: AichatError, request_id: str = "") -> OpenAIError:
    status = HTTP_STATUS.get(exc.kind, 500)
    param = _PARAMS.get(exc.field, exc.field) if exc.field else None
    error: dict[str, object] = {
        "message": exc.message,
        "type": _TYPES.get(status, "server_error"),
        "param": param,
        "code": _OPENAI_CODES.get(exc.reason, str(exc.reason).lower()),
    }
    headers: dict[str, str] = {}
    if exc.retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(exc.retry_after)))
        headers["retry-after-ms"] = str(max(1, round(exc.retry_after * 1000)))
    if request_id:
        headers["x-request-id"] = request_id
    return OpenAIError(status, headers, error)


def internal_error(request_id: str) -> OpenAIError:
    """For what nobody planned: nothing about it but the request id to quote."""
    return OpenAIError(
        500,
        {"x-request-id": request_id} if request_id else {},
        {
            "message": f"internal error; quote request id {request_id} when reporting it",
            "type": "server_error",
            "param": None,
            "code": "internal",
        },
    )
