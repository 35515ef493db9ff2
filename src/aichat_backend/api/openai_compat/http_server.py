"""The small HTTP listener Envoy routes ``/v1/chat/completions`` and ``/v1/models`` to.

Why not Envoy's gRPC-JSON transcoder, as for the rest of the REST API: it writes every
error as a ``google.rpc.Status`` JSON body (``convert_grpc_status``) or an empty one, never
OpenAI's ``{"error": {...}}``, and a server-streaming method's HTTP status is fixed by its
first message, so a streamed request could not be answered 429 or 404 in OpenAI's shape
(docs/api.md, "The OpenAI-compatible door", has the measurements). This listener speaks HTTP/1.1 on
loopback, like the gRPC port it trusts the identity header Envoy's jwt_authn set, and every
request climbs the gRPC interceptor's own ladder (request id, identity, rate limit,
metrics, access log): the same rules, counted as ``aichat.v1.OpenAICompatible`` methods.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from contextlib import aclosing
from typing import Any

import grpc
from aiohttp import web

from aichat_backend.api.calls import Call
from aichat_backend.api.errors import GRPC_CODE
from aichat_backend.api.interceptor import RequestInterceptor
from aichat_backend.errors import AichatError, InvalidArgument, Unavailable
from aichat_backend.reasons import Reason

from .completion_turn import CompletionTurn
from .completions import SESSION_HEADER, Completions
from .errors import OpenAIError, internal_error, openai_error
from .models import ModelList
from .params import parse_params

log = logging.getLogger(__name__)

SERVICE = "/aichat.v1.OpenAICompatible/"
CREATE_CHAT_COMPLETION = SERVICE + "CreateChatCompletion"
LIST_MODELS = SERVICE + "ListModels"
GET_MODEL = SERVICE + "GetModel"
SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache"}


class OpenAIServer:
    def __init__(
        self,
        ladder: RequestInterceptor,
        completions: Completions,
        models: ModelList,
        max_body_bytes: int,
    ) -> None:
        self._ladder = ladder
        self._completions = completions
        self._models = models
        self._closing = False
        self._max_body = max_body_bytes
        app = web.Application(client_max_size=max_body_bytes)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_get("/v1/models/{model:.+}", self._get_model)
        app.router.add_route("*", "/{path:.*}", self._unknown)
        # A client that hangs up cancels its handler, and so its turn (stored INCOMPLETE).
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        self._site: web.SockSite | None = None

    async def start(self, address: str) -> int:
        """Listen on ``host:port`` (port 0: any free one); the port bound."""
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        family, kind, _, _, where = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(where)
        except OSError:
            sock.close()
            raise
        await self._runner.setup()
        self._site = web.SockSite(self._runner, sock)
        await self._site.start()
        return int(sock.getsockname()[1])

    def refuse_new(self) -> None:
        """Shutting down: new requests get 503 (the SDKs retry, elsewhere)."""
        self._closing = True

    async def stop(self, timeout: float) -> None:
        self._closing = True
        self._runner._shutdown_timeout = timeout  # handlers still writing get this long
        await self._runner.cleanup()

    # --- handlers -----------------------------------------------------------------------

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request, self._max_body)
        streamed = isinstance(body, dict) and body.get("stream") is True
        call = self._begin(request, CREATE_CHAT_COMPLETION, streamed)
        out = _Response(request)
        code = grpc.StatusCode.OK
        try:
            await self._admit(call)
            if not isinstance(body, dict):
                raise _bad_body(body)
            params = parse_params(body)
            turn = await self._completions.start(params, request.headers.get(SESSION_HEADER, ""))
            headers = {"x-request-id": call.request_id, SESSION_HEADER: turn.session}
            if params.stream:
                await out.stream(turn, headers)
                return out.response()
            answer = await turn.collect()
            return web.json_response(answer, headers=headers, dumps=_dumps)
        except AichatError as exc:
            call.error, code = exc, GRPC_CODE[exc.kind]
            return await out.error(openai_error(exc, call.request_id))
        except (asyncio.CancelledError, ConnectionResetError):
            code = grpc.StatusCode.CANCELLED  # the client went away: the turn was cancelled
            raise
        except Exception as exc:  # the top of the request
            log.error("unhandled exception", exc_info=exc, extra={"method": call.method})
            code = grpc.StatusCode.INTERNAL
            return await out.error(internal_error(call.request_id))
        finally:
            self._ladder.finish(call, code)

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        return await self._unary(request, LIST_MODELS, None)

    async def _get_model(self, request: web.Request) -> web.StreamResponse:
        return await self._unary(request, GET_MODEL, request.match_info["model"])

    async def _unary(self, request: web.Request, method: str, model: str | None) -> web.Response:
        call = self._begin(request, method, False)
        code = grpc.StatusCode.OK
        try:
            await self._admit(call)
            found = self._models.list() if model is None else self._models.get(model)
            return web.json_response(found, headers={"x-request-id": call.request_id}, dumps=_dumps)
        except AichatError as exc:
            call.error, code = exc, GRPC_CODE[exc.kind]
            return _error_response(openai_error(exc, call.request_id))
        finally:
            self._ladder.finish(call, code)

    async def _unknown(self, request: web.Request) -> web.Response:
        return _error_response(
            OpenAIError(
                404,
                {},
                {
                    "message": f"Invalid URL ({request.method} {request.path})",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                },
            )
        )

    # --- the ladder -----------------------------------------------------------------------

    def _begin(self, request: web.Request, method: str, streamed: bool) -> Call:
        metadata = tuple((k.lower(), v) for k, v in request.headers.items())
        return self._ladder.begin(method, metadata, "server_stream" if streamed else "unary")

    async def _admit(self, call: Call) -> None:
        await self._ladder.admit(call)
        if self._closing:
            raise Unavailable(
                "the server is shutting down: send the request again",
                reason=Reason.SERVER_SHUTTING_DOWN,
                retry_after=1.0,
            )


class _Response:
    """The response of one completion: headers held until its first event, then a stream."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._stream: web.StreamResponse | None = None

    async def stream(self, turn: CompletionTurn, headers: dict[str, str]) -> None:
        async with aclosing(turn.stream()) as pieces:
            async for piece in pieces:
                if self._stream is None:
                    self._stream = web.StreamResponse(headers={**SSE_HEADERS, **headers})
                    await self._stream.prepare(self._request)
                await self._stream.write(piece)
        await self.response().write_eof()

    def response(self) -> web.StreamResponse:
        assert self._stream is not None  # a turn's stream always ends with an event
        return self._stream

    async def error(self, err: OpenAIError) -> web.StreamResponse:
        """Before the first event, the error's own status; after it, a last SSE event."""
        if self._stream is None:
            return _error_response(err)
        await self._stream.write(err.sse())
        await self._stream.write_eof()
        return self._stream


def _error_response(err: OpenAIError) -> web.Response:
    return web.Response(
        status=err.status,
        body=err.body(),
        headers={**err.headers, "content-type": "application/json"},
    )


async def _json_body(request: web.Request, limit: int) -> Any:
    try:
        return json.loads(await request.read())
    except web.HTTPRequestEntityTooLarge:
        return InvalidArgument(
            f"the body is over {limit} bytes",
            reason=Reason.REQUEST_TOO_LARGE,
        )
    except ValueError:
        return None


def _bad_body(body: Any) -> AichatError:
    if isinstance(body, AichatError):
        return body
    return InvalidArgument(
        "the body must be a JSON object (a chat completion request)",
        reason=Reason.MALFORMED_REQUEST,
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
