"""The fake upstream server: routing, recording, and the scripts it plays (``playback``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
from collections import deque
from collections.abc import Callable, Mapping

from aichat_devtools.fake_llm.anthropic_format import AnthropicFormat
from aichat_devtools.fake_llm.behaviours import echo_behaviour
from aichat_devtools.fake_llm.context_window import OpenAIContextStyle
from aichat_devtools.fake_llm.http_wire import (
    ClientGone,
    Connection,
    HttpRequest,
    Response,
    answer_other,
    send_json,
)
from aichat_devtools.fake_llm.openai_format import OpenAIFormat
from aichat_devtools.fake_llm.playback import play
from aichat_devtools.fake_llm.script import DefaultBehaviour, RecordedRequest, Script, pieces
from aichat_devtools.fake_llm.upstream_rules import Metered, UpstreamRules


class FakeLLMServer:
    """An in-process fake upstream: ``async with FakeLLMServer() as srv: srv.base_url``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default: DefaultBehaviour | Script | None = None,
        api_key: str | None = None,
        record_requests: bool = True,
        context_windows: Mapping[str, int] | None = None,
        openai_context_style: OpenAIContextStyle = "openai",
        min_cache_tokens: int = 1024,
    ) -> None:
        """``default`` plays when no script is queued: a fixed Script (e.g. an upstream
        that always answers 503), a function of the request, or None for the echo.
        ``record_requests=False`` keeps a long benchmark run from growing memory.
        ``context_windows`` (model → tokens) are enforced, refused past with each
        server's own error (``openai_context_style`` on the OpenAI wire); prompts of
        ``min_cache_tokens`` or more are cached (``upstream_rules``)."""
        self.host = host
        self.port = port
        if isinstance(default, Script):
            fixed = default
            self.default: DefaultBehaviour = lambda _request: dataclasses.replace(fixed)
        else:
            self.default = default or echo_behaviour()
        # When set, requests must carry this key (Bearer or x-api-key) or get a 401.
        self.api_key = api_key
        self.record_requests = record_requests
        self.rules = UpstreamRules(
            context_windows=context_windows,
            openai_context_style=openai_context_style,
            min_cache_tokens=min_cache_tokens,
        )
        self.requests: list[RecordedRequest] = []
        self.request_count = 0
        self.stream_disconnects = 0  # clients that hung up before a response ended
        self.connections_accepted = 0
        self._scripts: deque[Script] = deque()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._closing = False
        self._changed = asyncio.Condition()

    # -- lifecycle

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        # Aborting the sockets ends every handler, hung scripts included. (Cancelling the
        # handler tasks instead makes asyncio's stream callback log the cancellation.)
        for writer in list(self._writers):
            writer.transport.abort()
        if self._handlers:
            await asyncio.wait(set(self._handlers))
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeLLMServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def root_url(self) -> str:
        """For the Anthropic SDK, which appends ``/v1/messages`` itself."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """For OpenAI-style clients (``…/v1/chat/completions``)."""
        return self.root_url + "/v1"

    # -- scripting and observation

    def enqueue(self, *scripts: Script) -> None:
        self._scripts.extend(scripts)

    @property
    def pending_scripts(self) -> int:
        return len(self._scripts)

    def drop_scripts(self) -> None:
        """Forget the scripts no request has taken (a test trying its scenario again)."""
        self._scripts.clear()

    async def wait_disconnect(self, within: float = 1.0, *, count: int = 1) -> None:
        """Return once ``count`` clients have hung up mid-response; TimeoutError if not."""
        await self._wait_for(lambda: self.stream_disconnects >= count, within)

    async def wait_requests(self, count: int, within: float = 1.0) -> None:
        """Return once ``count`` requests have arrived; TimeoutError if not."""
        await self._wait_for(lambda: self.request_count >= count, within)

    async def _wait_for(self, predicate: Callable[[], bool], within: float) -> None:
        # A bounded wait by design: a test waiting on the fake must fail, not hang.
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- serving

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.connections_accepted += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Each SSE event must leave at once, not wait for Nagle to fill a segment.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(reader, writer)
        try:
            while (request := await conn.read_request()) is not None:
                if not await self._answer(conn, request):
                    break
        except (ConnectionError, ValueError):
            pass
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, conn: Connection, request: HttpRequest) -> bool:
        """Answer one request; False when the connection must not be reused."""
        try:
            body = json.loads(request.body) if request.body else None
        except ValueError:
            body = None
        recorded = RecordedRequest(request.method, request.path, request.headers, body)
        if self.record_requests:
            self.requests.append(recorded)
        self.request_count += 1
        await self._notify()

        path = request.path.split("?", 1)[0].rstrip("/")
        fmt_class: type[OpenAIFormat] | type[AnthropicFormat]
        if path.endswith("/chat/completions"):
            fmt_class = OpenAIFormat
        elif path.endswith("/messages"):
            fmt_class = AnthropicFormat
        else:
            await answer_other(conn, request.method, path)
            return True
        view = self.rules.view(fmt_class is AnthropicFormat, body if isinstance(body, dict) else {})
        if request.method != "POST" or not isinstance(body, dict):
            script = Script(error_status=400, error_message="Expected a JSON POST body.")
        elif not self._authorised(request.headers):
            script = Script(error_status=401, error_message="Invalid API key.")
        elif (refusal := self.rules.refusal(view)) is not None:
            # Refused as the real API would, before any script is used up.
            await send_json(conn, refusal.status, refusal.body)
            return True
        else:
            script = self._scripts.popleft() if self._scripts else self.default(recorded)
        played = self.rules.played(view, pieces(script))
        replies = script.error_status is None or script.error_after is not None
        metered = self.rules.meter(view, script, played) if replies else Metered(0, 0)
        fmt = fmt_class(script, view.body, played, metered, self.rules.signer)
        keep_alive = request.headers.get("connection", "").lower() != "close"
        stream = bool(view.body.get("stream"))
        response = Response(conn)
        try:
            completed = await play(response, fmt, script, stream=stream)
        except ClientGone:
            if not self._closing:
                self.stream_disconnects += 1
                await self._notify()
            return False
        finally:
            await response.finish()
        return keep_alive and completed

    def _authorised(self, headers: dict[str, str]) -> bool:
        if self.api_key is None:
            return True
        return self.api_key in (
            headers.get("x-api-key"),
            headers.get("authorization", "").removeprefix("Bearer ").strip(),
        )
