"""Every RPC passes through here: request id, identity, errors, access log.

grpc.aio interceptors only see the handler, so we wrap its behaviour: the wrapped
function runs in the RPC's own task, which is what lets the context variables of
``request_context`` follow the call into servicers and logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc
from google.rpc import status_pb2

from aichat_backend import request_context
from aichat_backend.api.calls import OPEN_SERVICES, Call
from aichat_backend.api.errors import grpc_code_of, internal_status, to_status
from aichat_backend.errors import AichatError, FailedPrecondition, InvalidArgument
from aichat_backend.reasons import Reason

log = logging.getLogger("aichat_backend.access")

STATUS_DETAILS_KEY = "grpc-status-details-bin"


class _Malformed:
    """Stands in for a request whose bytes did not decode."""


_MALFORMED = _Malformed()


def _safe_deserializer(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def wrapper(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:
            # grpc would answer INTERNAL/UNKNOWN; we answer INVALID_ARGUMENT in the handler.
            return _MALFORMED

    return wrapper


class RpcObserver(Protocol):
    """Told when RPCs start and end (metrics)."""

    def rpc_started(self, grpc_type: str, method: str) -> None: ...

    def rpc_handled(self, grpc_type: str, method: str, code: str, seconds: float) -> None: ...


class _Unobserved:
    def rpc_started(self, grpc_type: str, method: str) -> None:
        pass

    def rpc_handled(self, grpc_type: str, method: str, code: str, seconds: float) -> None:
        pass


# Runs after identity is known, before the servicer: rate limits live here.
Gate = Callable[[str], Awaitable[None]]


class RequestInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        auth_header: str = "x-user-id",
        max_user_id_length: int = 256,
        observer: RpcObserver | None = None,
        gate: Gate | None = None,
        max_response_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self._max_response = max_response_bytes
        self._auth_header = auth_header.lower()
        self._max_user = max_user_id_length
        self._observer: RpcObserver = observer or _Unobserved()
        self._gate = gate
        # One wrapped handler per method, built on its first call: the wrapper reads the
        # call's metadata from its context, so nothing in it is per call.
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method  # type: ignore[attr-defined]
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._wrapped[method] = self._wrap(handler, method)
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method),
                request_deserializer=_safe_deserializer(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method),
                request_deserializer=_safe_deserializer(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler  # we define no client- or bidi-streaming methods

    # --- the ladder, for any transport (the OpenAI-compatible HTTP API climbs it too) ---

    def begin(self, method: str, metadata: tuple[Any, ...], kind: str) -> Call:
        """A call starts: request id and identity read, counted, bound to the context."""
        call = Call(method, metadata, self._auth_header, self._max_user)
        call.kind = kind
        self._observer.rpc_started(kind, method)
        request_context.bind(call.user, call.request_id, method)
        request_context.bind_metadata(metadata)
        return call

    async def admit(self, call: Call) -> None:
        """Refused early (no identity, bad request), or through the gate (rate limits)."""
        if call.error is not None:
            raise call.error
        if self._gate is not None and call.user is not None:
            await self._gate(call.user)

    def finish(self, call: Call, code: grpc.StatusCode) -> None:
        """A call ends: its metrics and its access log line."""
        seconds = time.perf_counter() - call.start
        self._observer.rpc_handled(call.kind, call.method, code.name, seconds)
        _access_log(call, code, seconds)

    def _begin(
        self, method: str, context: grpc.aio.ServicerContext, request: Any, kind: str
    ) -> Call:
        call = self.begin(method, tuple(context.invocation_metadata() or ()), kind)
        if call.error is None and isinstance(request, _Malformed):
            call.error = InvalidArgument(
                "the request message could not be decoded", reason=Reason.MALFORMED_REQUEST
            )
        return call

    @contextlib.asynccontextmanager
    async def _handled(self, call: Call, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        """The one ladder every RPC runs in: refuse early, gate, map errors, log the end."""
        code = grpc.StatusCode.OK
        try:
            await self.admit(call)
            yield
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN  # type: ignore[assignment]
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:  # the top of the request
            status = status_for(call, exc)
            code = grpc_code_of(status)
            await abort_with(context, status, call.request_id)
        finally:
            self.finish(call, code)

    def _wrap_unary(
        self, behavior: Callable[..., Awaitable[Any]], method: str
    ) -> Callable[..., Awaitable[Any]]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call = self._begin(method, context, request, "unary")
            async with self._handled(call, context):
                response = await behavior(request, context)
                self._check_size(response)
                await _send_headers(context, call)
                return response

        return wrapped

    def _wrap_stream(
        self, behavior: Callable[..., AsyncIterator[Any]], method: str
    ) -> Callable[..., AsyncIterator[Any]]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            call = self._begin(method, context, request, "server_stream")
            headers_sent = False
            async with self._handled(call, context):
                async for item in behavior(request, context):
                    self._check_size(item)
                    if not headers_sent:
                        await _send_headers(context, call)
                        headers_sent = True
                    yield item

        return wrapped

    def _check_size(self, response: Any) -> None:
        """Past the send limit gRPC itself would fail the call after we return, as a
        retryable RESOURCE_EXHAUSTED (429 through REST) that our log and metrics never
        see: refuse it here instead, as ours, non-retryable and counted."""
        size = response.ByteSize() if hasattr(response, "ByteSize") else 0
        if size > self._max_response:
            raise FailedPrecondition(
                f"the response would be {size} bytes, over the {self._max_response} byte "
                "limit: ask for a smaller page",
                reason=Reason.RESPONSE_TOO_LARGE,
                metadata={"limit_bytes": str(self._max_response)},
            )


async def _send_headers(context: grpc.aio.ServicerContext, call: Call) -> None:
    extra = request_context.response_headers()
    await context.send_initial_metadata((("x-request-id", call.request_id), *extra))


def status_for(call: Call, exc: Exception) -> status_pb2.Status:
    if isinstance(exc, AichatError):
        call.error = exc
        return to_status(exc, call.request_id)
    # The traceback goes to our log, never to the caller.
    log.error("unhandled exception", exc_info=exc, extra={"method": call.method})
    return internal_status(call.request_id)


async def abort_with(
    context: grpc.aio.ServicerContext, status: status_pb2.Status, request_id: str
) -> None:
    await context.abort(
        grpc_code_of(status),
        status.message,
        trailing_metadata=(
            (STATUS_DETAILS_KEY, status.SerializeToString()),
            ("x-request-id", request_id),
        ),
    )


def _access_log(call: Call, code: grpc.StatusCode, seconds: float) -> None:
    log.info(
        "rpc",
        extra={
            "method": call.method,
            "code": code.name,
            "reason": call.error.reason if call.error is not None else None,
            "duration_ms": round(seconds * 1000, 3),
            "user": call.user,
            "request_id": call.request_id,
        },
    )
