"""SDK errors → domain errors, at the edge where an adapter sees them.

Both SDKs (and httpx2 underneath them, whose errors the Anthropic stream lets through
raw) are translated here and nowhere else, so the engine only ever sees
``aichat_backend.errors`` types. Messages are written for the caller: never the SDK's
own text (which embeds the whole upstream body), never anything that could hold a key;
at most a short, redacted ``error.message`` from upstream where it helps the caller fix
the request (e.g. "maximum context length is 128000 tokens").
"""

from __future__ import annotations

import email.utils
import json
import re
import sys
import time
from typing import Any

import httpx2
import openai

from aichat_backend.errors import (
    AichatError,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from aichat_backend.providers.context_errors import context_too_long
from aichat_backend.reasons import Reason

# When a 429 carries no usable retry-after, tell the caller to wait this long.
DEFAULT_RETRY_AFTER_SECONDS = 2.0
_MAX_UPSTREAM_MESSAGE = 200
# Key-like tokens: "sk-…" (also "sk-ant-…", masked "sk-ab***yz"), bearer tokens, and long
# opaque strings, which upstream messages sometimes echo back.
_SECRETISH = re.compile(r"(?i)\b(?:sk|pk|rk)-[\w\-*.]{4,}|\bbearer\s+\S+|\b[\w\-]{32,}")

# The anthropic SDK costs ~40 MB to import: it is loaded only when an anthropic model is
# built, and its error classes are looked up only once it is (none can exist before).
SDK_ERRORS: tuple[type[BaseException], ...] = (
    openai.OpenAIError,
    httpx2.HTTPError,
    json.JSONDecodeError,  # a malformed SSE data line
)


def _sdk_classes(name: str) -> tuple[type[BaseException], ...]:
    """``name`` from every provider SDK loaded so far (openai always, anthropic if used)."""
    found: list[type[BaseException]] = [getattr(openai, name)]
    anthropic = sys.modules.get("anthropic")
    if anthropic is not None:
        found.append(getattr(anthropic, name))
    return tuple(found)


def stream_interrupted(provider: str) -> Unavailable:
    """The stream ended (or dropped) before the upstream said it was complete."""
    return Unavailable(
        "The model provider's stream ended before the answer was complete.",
        reason=Reason.PROVIDER_STREAM_INTERRUPTED,
        metadata={"provider": provider},
    )


def provider_timeout(provider: str) -> DeadlineExceeded:
    """The upstream went silent for a whole timeout period (before or during the answer)."""
    return DeadlineExceeded(
        "The model provider did not answer in time.",
        reason=Reason.PROVIDER_TIMEOUT,
        metadata={"provider": provider},
    )


def translate_error(exc: BaseException, *, provider: str, mid_stream: bool) -> AichatError:
    """The domain error for an SDK/transport error.

    ``mid_stream``: the response had started streaming, so a dropped connection means
    an interrupted answer rather than an unreachable provider.
    """
    if isinstance(exc, AichatError):
        return exc
    meta = {"provider": provider}
    if isinstance(
        exc, (*_sdk_classes("APITimeoutError"), httpx2.TimeoutException)
    ) and not _refused(exc):
        return provider_timeout(provider)
    if isinstance(exc, (*_sdk_classes("APIConnectionError"), httpx2.TransportError)):
        if mid_stream:
            return stream_interrupted(provider)
        return Unavailable(
            "The model provider could not be reached.",
            reason=Reason.PROVIDER_UNAVAILABLE,
            metadata=meta,
        )
    if isinstance(exc, _sdk_classes("APIStatusError")):
        # Both SDKs' APIStatusError carry status_code, response and body.
        status: Any = exc
        if status.status_code >= 400:
            return _from_status(status.status_code, status.response, status.body, provider)
        # An error event inside a 200 stream (Anthropic ``event: error``).
        return _from_error_type(_error_field(status.body, "type"), status.body, provider)
    if isinstance(exc, _sdk_classes("APIResponseValidationError")):
        return _bad_response(provider)
    if isinstance(exc, openai.APIError):
        # An error object inside an OpenAI stream: ``data: {"error": {...}}``.
        return _from_error_type(_error_field(exc.body, "type"), exc.body, provider)
    if isinstance(exc, json.JSONDecodeError):
        return _bad_response(provider)
    return Internal(
        "The model provider call failed unexpectedly.", reason=Reason.PROVIDER_ERROR, metadata=meta
    )


def _refused(exc: BaseException) -> bool:
    """A connection that failed at once, reported as a timeout.

    The SDKs' aiohttp transport maps every aiohttp connection error, a refused
    connection included, to httpx's ConnectTimeout; the original error is on the chain.
    """
    seen: BaseException | None = exc.__cause__ or exc.__context__
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ConnectionError) or (
            isinstance(seen, OSError) and not isinstance(seen, TimeoutError) and seen.errno
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _from_status(
    status: int, response: httpx2.Response, body: object, provider: str
) -> AichatError:
    meta = {"provider": provider, "upstream_status": str(status)}
    error_type = _error_field(body, "type")
    if error_type:
        meta["upstream_error_type"] = error_type
    request_id = response.headers.get("x-request-id") or response.headers.get("request-id")
    if request_id:
        meta["upstream_request_id"] = request_id[:64]

    if status == 429:
        if _error_field(body, "code") == "insufficient_quota":
            # OpenAI's "out of credit": waiting will not help, so no retry_after.
            return ResourceExhausted(
                "The model provider's quota for this service is used up.",
                reason=Reason.PROVIDER_QUOTA_EXHAUSTED,
                metadata=meta,
            )
        return ResourceExhausted(
            "The model provider is rate limiting this service; retry later.",
            reason=Reason.PROVIDER_RATE_LIMITED,
            metadata=meta,
            retry_after=retry_after_seconds(response.headers),
        )
    if status in (401, 403):
        # Our key was rejected: a server-side misconfiguration, never the caller's
        # credentials, so INTERNAL rather than UNAUTHENTICATED / PERMISSION_DENIED.
        return Internal(
            "The model provider rejected this service's credentials.",
            reason=Reason.PROVIDER_AUTH_FAILED,
            metadata=meta,
        )
    if status == 404:
        # FAILED_PRECONDITION, not INVALID_ARGUMENT: the caller named a model that is in
        # our catalogue, so their request is valid; the catalogue entry points at an
        # upstream model (or base URL) that does not exist, which an operator must fix.
        return FailedPrecondition(
            _with_upstream("The configured upstream model was not found", body),
            reason=Reason.MODEL_NOT_FOUND,
            metadata=meta,
        )
    if status in (400, 422):
        too_long = context_too_long(_error_field(body, "message"), body, provider, meta)
        if too_long is not None:
            return too_long
    if status in (400, 413, 422):
        return InvalidArgument(
            _with_upstream("The model provider rejected the request", body),
            reason=Reason.PROVIDER_REJECTED_INPUT,
            metadata=meta,
        )
    if status >= 500 or status == 408:
        return Unavailable(
            "The model provider is unavailable or overloaded.",
            reason=Reason.PROVIDER_UNAVAILABLE,
            metadata=meta,
        )
    return Internal(
        "The model provider refused the request.", reason=Reason.PROVIDER_ERROR, metadata=meta
    )


def _from_error_type(error_type: str | None, body: object, provider: str) -> AichatError:
    """Map an in-stream error event by its type (the HTTP status was already 200)."""
    meta = {"provider": provider}
    if error_type:
        meta["upstream_error_type"] = error_type
    if error_type in ("rate_limit_error", "rate_limit_exceeded", "requests", "tokens"):
        return ResourceExhausted(
            "The model provider is rate limiting this service; retry later.",
            reason=Reason.PROVIDER_RATE_LIMITED,
            metadata=meta,
            retry_after=DEFAULT_RETRY_AFTER_SECONDS,
        )
    if error_type == "invalid_request_error":
        too_long = context_too_long(_error_field(body, "message"), body, provider, meta)
        if too_long is not None:
            return too_long
    if error_type in ("invalid_request_error", "request_too_large"):
        return InvalidArgument(
            _with_upstream("The model provider rejected the request", body),
            reason=Reason.PROVIDER_REJECTED_INPUT,
            metadata=meta,
        )
    # overloaded_error, api_error, server_error, or something new: the answer broke off
    # on the provider's side and a later attempt may well succeed.
    return Unavailable(
        "The model provider failed while answering.",
        reason=Reason.PROVIDER_UNAVAILABLE,
        metadata=meta,
    )


def _bad_response(provider: str) -> Internal:
    return Internal(
        "The model provider sent a response this service could not read.",
        reason=Reason.PROVIDER_BAD_RESPONSE,
        metadata={"provider": provider},
    )


def retry_after_seconds(headers: httpx2.Headers) -> float:
    """Seconds to wait per ``retry-after-ms`` / ``retry-after`` (delta or HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            pass
    return DEFAULT_RETRY_AFTER_SECONDS


def _error_field(body: object, name: str) -> str | None:
    """``name`` from an error body as either SDK hands it over (wrapped or not)."""
    if isinstance(body, dict):
        inner: Any = body.get("error", body)
        if isinstance(inner, dict):
            value = inner.get(name)
            return value if isinstance(value, str) else None
    return None


def _with_upstream(prefix: str, body: object) -> str:
    detail = _error_field(body, "message")
    if not detail:
        return prefix + "."
    detail = _SECRETISH.sub("[redacted]", " ".join(detail.split()))
    if len(detail) > _MAX_UPSTREAM_MESSAGE:
        detail = detail[: _MAX_UPSTREAM_MESSAGE - 1] + "…"
    return f"{prefix}: {detail}"
