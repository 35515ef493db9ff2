"""A fake LLM upstream that speaks the real OpenAI and Anthropic wire formats.

Tests and benchmarks point the real SDKs at it over real HTTP, so what they prove holds
for the SDKs' own parsing, connection handling and error classes (respx cannot intercept
the httpx2-based SDKs, and patching them would test our mocks, not our adapters).

- ``POST …/chat/completions``: OpenAI Chat Completions, streamed (SSE ``data:`` chunks,
  ``[DONE]``) or as one ``chat.completion`` object.
- ``POST …/messages``: Anthropic Messages, streamed (``event:``/``data:`` pairs) or whole.

Each request plays the next queued :class:`Script` (``server.enqueue``) or, with none
queued, the default behaviour: echo the last user text word by word. Every request is
recorded (``server.requests``) and a client that hangs up mid-response is counted
(``await server.wait_disconnect()``), so tests can prove cancellation reached upstream.

Standalone, for the demo and the benchmark::

    python -m aichat_devtools.fake_llm --port 8090 --ttft-ms 50 --token-delay-ms 5

prints ``listening on http://127.0.0.1:PORT`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import http
import itertools
import json
import re
import signal
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# (call id, function name, arguments); arguments given as a str are sent verbatim, so a
# script can play a model that emits broken JSON.
ToolCallScript = tuple[str, str, dict[str, Any] | str]

_MAX_HEAD_BYTES = 64 * 1024
_WORDS = re.compile(r"\s*\S+\s*|\s+")


@dataclass
class Script:
    """What the fake upstream does for one request.

    A piece is one streamed delta: a text token or a fragment of tool-call arguments.
    ``cut_after``/``hang_after``/``error_after`` count pieces already sent.
    """

    tokens: list[str] | None = None
    # Used when ``tokens`` is None: split word by word, or into ``n_tokens`` pieces.
    text: str = ""
    n_tokens: int | None = None
    tool_calls: list[ToolCallScript] = field(default_factory=list)
    tool_args_chunk: int = 8  # characters of argument JSON per tool-call delta
    ttft: float = 0.0  # seconds before the first byte of the response
    token_delay: float = 0.0  # seconds between pieces
    # With True the 200 headers go out at once and the ttft delay follows them, as an
    # upstream that accepted the request but is slow to start generating.
    ttft_after_headers: bool = False
    error_status: int | None = None  # answer with this HTTP error instead of a reply
    error_message: str | None = None
    error_type: str | None = None  # overrides the type implied by the status
    retry_after: float | None = 1.0  # sent as retry-after with a 429
    error_after: int | None = None  # send an in-stream error event after N pieces
    cut_after: int | None = None  # drop the connection after N pieces (no terminator)
    hang_after: int | None = None  # go silent after N pieces, keeping the socket open
    # Pause after N pieces until ``gate`` is set (a test holds a turn mid-answer).
    gate_after: int | None = None
    gate: asyncio.Event | None = None
    delay_after_gate: float | None = None  # token_delay once the gate has opened
    input_tokens: int | None = None  # default: a rough count of the request
    output_tokens: int | None = None  # default: the number of pieces
    finish_reason: str | None = None  # OpenAI vocabulary; default stop / tool_calls

    def text_tokens(self) -> list[str]:
        if self.tokens is not None:
            return list(self.tokens)
        if not self.text:
            return []
        if self.n_tokens:
            size = -(-len(self.text) // self.n_tokens)
            return [self.text[i : i + size] for i in range(0, len(self.text), size)]
        return _WORDS.findall(self.text)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None


DefaultBehaviour = Callable[[RecordedRequest], Script]


# The demo model's two tricks, so `make run` shows a tool call and an approval without a
# real model: "calculate <expr>" calls the calculator (read-only: runs at once), "add task
# <title>" calls add_task (asks for approval). Chat Completions request shape only.
DEMO_TOOL_COMMANDS = (("calculate ", "calculate", "expression"), ("add task ", "add_task", "title"))


def echo_behaviour(ttft: float = 0.0, token_delay: float = 0.0) -> DefaultBehaviour:
    """Reply ``Echo: <last user text>`` word by word (the demo's default)."""

    def script(request: RecordedRequest) -> Script:
        body = request.body if isinstance(request.body, dict) else {}
        messages = body.get("messages") or []
        last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
        if last.get("role") == "tool":
            content = str(last.get("content", ""))
            inner = re.search(r"<tool_output[^>]*>\n?(.*?)\n?</tool_output>", content, re.S)
            last = {"content": inner.group(1) if inner else content}
            return Script(
                text=f"The tool answered: {last.get('content', '')}",
                ttft=ttft,
                token_delay=token_delay,
            )
        text = last_user_text(body)
        offered = [
            t.get("function", {}).get("name", "")
            for t in body.get("tools") or []
            if isinstance(t, dict)
        ]
        for prefix, tool, argument in DEMO_TOOL_COMMANDS:
            name = next((n for n in offered if n.endswith("__" + tool)), None)
            if name and text.lower().startswith(prefix):
                call = (f"call_{len(messages)}", name, {argument: text[len(prefix) :].strip()})
                return Script(tool_calls=[call], ttft=ttft, token_delay=token_delay)
        return Script(text="Echo: " + text, ttft=ttft, token_delay=token_delay)

    return script


def fixed_tokens_behaviour(
    count: int, ttft: float = 0.0, token_delay: float = 0.0
) -> DefaultBehaviour:
    """Reply with ``count`` short word tokens whatever was asked (for benchmarks)."""
    words = ("lorem ", "ipsum ", "dolor ", "sit ", "amet ", "consectetur ", "adipiscing ")
    tokens = list(itertools.islice(itertools.cycle(words), count))

    def script(_request: RecordedRequest) -> Script:
        return Script(tokens=tokens, ttft=ttft, token_delay=token_delay)

    return script


def last_user_text(body: Any) -> str:
    """The text of the last user message, in either API's request shape."""
    if not isinstance(body, dict):
        return ""
    for message in reversed(body.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [
                part.get("text", "")
                for part in content
                if isinstance(part, dict) and part.get("type") == "text"
            ]
            if texts:
                return " ".join(texts)
    return ""


# --- HTTP plumbing ---------------------------------------------------------------------


class _ClientGone(Exception):
    """The client closed the connection while we were answering."""


@dataclass
class _HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Connection:
    """One keep-alive connection: a byte buffer over the stream reader.

    Reading only through this buffer lets a watcher task read while we stream a response
    (the only way to see a client's FIN) without losing bytes of a next request.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()

    async def _fill(self) -> bool:
        try:
            data = await self.reader.read(65536)
        except ConnectionError:
            return False
        if not data:
            return False
        self.buf += data
        return True

    async def read_request(self) -> _HttpRequest | None:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > _MAX_HEAD_BYTES or not await self._fill():
                return None
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        request_line, *header_lines = head.split("\r\n")
        method, path, _version = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        while len(self.buf) < length:
            if not await self._fill():
                return None
        body = bytes(self.buf[:length])
        del self.buf[:length]
        return _HttpRequest(method, path, headers, body)

    async def wait_eof(self) -> None:
        """Return when the client closes; bytes it sends meanwhile stay buffered."""
        while await self._fill():
            pass


def _reason_phrase(status: int) -> str:
    if status == 529:
        return "Overloaded"
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_reason_phrase(status)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class _Response:
    """Writes one response; every wait races the client's disconnect."""

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.writer = conn.writer
        self.eof = asyncio.ensure_future(conn.wait_eof())

    async def finish(self) -> None:
        # Wait for the watcher to really stop: a reader still waiting on the stream
        # would make the next request's read fail.
        self.eof.cancel()
        await asyncio.wait({self.eof})

    def _check(self) -> None:
        if self.eof.done():
            raise _ClientGone

    async def pause(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.wait({self.eof}, timeout=seconds)
        self._check()

    async def hang(self) -> None:
        await self.eof
        raise _ClientGone

    async def write(self, data: bytes) -> None:
        self._check()
        self.writer.write(data)
        try:
            await self.writer.drain()
        except ConnectionError as exc:
            raise _ClientGone from exc

    def cut(self) -> None:
        # Close without the terminating zero-length chunk: the client sees a truncated
        # body, as when an upstream or a proxy drops the connection mid-answer.
        self.writer.close()


# --- wire formats ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Piece:
    text: str | None = None
    tool_index: int = 0
    tool_first: bool = False
    args: str = ""


def _pieces(script: Script) -> list[_Piece]:
    pieces = [_Piece(text=token) for token in script.text_tokens()]
    step = max(1, script.tool_args_chunk)
    for index, (_call_id, _name, args) in enumerate(script.tool_calls):
        encoded = args if isinstance(args, str) else json.dumps(args)
        fragments = [encoded[i : i + step] for i in range(0, len(encoded), step)] or [""]
        pieces += [
            _Piece(tool_index=index, tool_first=(n == 0), args=fragment)
            for n, fragment in enumerate(fragments)
        ]
    return pieces


def _usage(script: Script, body: Any, pieces: list[_Piece]) -> tuple[int, int]:
    prompt = script.input_tokens
    if prompt is None:
        prompt = max(1, len(_dumps(body.get("messages", []))) // 4)
    completion = script.output_tokens if script.output_tokens is not None else len(pieces)
    return prompt, completion


def _finish_reason(script: Script) -> str:
    return script.finish_reason or ("tool_calls" if script.tool_calls else "stop")


_OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ANTHROPIC_STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


class _OpenAIFormat:
    request_id_header = "x-request-id"

    def __init__(self, script: Script, body: Any, pieces: list[_Piece]) -> None:
        self.script = script
        self.pieces = pieces
        self.model = str(body.get("model", "fake-model"))
        self.id = "chatcmpl-" + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        options = body.get("stream_options") or {}
        self.include_usage = bool(options.get("include_usage"))
        self.usage = _usage(script, body, pieces)
        # Text chunks are the hot path of a benchmark: splice the token into a template.
        usage_null = ',"usage":null' if self.include_usage else ""
        model = json.dumps(self.model)
        self._text_prefix = (
            f'data: {{"id":"{self.id}","object":"chat.completion.chunk",'
            f'"created":{self.created},"model":{model},'
            '"service_tier":"default","system_fingerprint":"fp_fake",'
            '"choices":[{"index":0,"delta":{"content":'
        )
        self._text_suffix = '},"logprobs":null,"finish_reason":null}]' + usage_null + "}\n\n"

    def error(self, status: int, message: str, error_type: str | None) -> dict[str, Any]:
        default_type, code = _OPENAI_ERRORS.get(status, ("server_error", None))
        return {
            "error": {
                "message": message,
                "type": error_type or default_type,
                "param": None,
                "code": code,
            }
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self.include_usage:
            chunk["usage"] = None
        return f"data: {_dumps(chunk)}\n\n".encode()

    def start(self) -> bytes:
        return self._chunk({"role": "assistant", "content": "", "refusal": None})

    def piece(self, piece: _Piece) -> bytes:
        if piece.text is not None:
            return (self._text_prefix + json.dumps(piece.text) + self._text_suffix).encode()
        call: dict[str, Any] = {"index": piece.tool_index}
        if piece.tool_first:
            call_id, name, _args = self.script.tool_calls[piece.tool_index]
            call.update(id=call_id, type="function", function={"name": name, "arguments": ""})
            head = self._chunk({"tool_calls": [call]})
            call = {"index": piece.tool_index}
        else:
            head = b""
        call["function"] = {"arguments": piece.args}
        return head + self._chunk({"tool_calls": [call]})

    def end(self) -> bytes:
        out = self._chunk({}, _finish_reason(self.script))
        if self.include_usage:
            prompt, completion = self.usage
            usage = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
            out += f"data: {_dumps(usage)}\n\n".encode()
        return out + b"data: [DONE]\n\n"

    def stream_error(self, status: int, message: str, error_type: str | None) -> bytes:
        return f"data: {_dumps(self.error(status, message, error_type))}\n\n".encode()

    def whole(self) -> dict[str, Any]:
        text = "".join(p.text for p in self.pieces if p.text is not None)
        message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
        if self.script.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": args if isinstance(args, str) else json.dumps(args),
                    },
                }
                for call_id, name, args in self.script.tool_calls
            ]
        prompt, completion = self.usage
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _finish_reason(self.script),
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
            "system_fingerprint": "fp_fake",
        }


class _AnthropicFormat:
    request_id_header = "request-id"

    def __init__(self, script: Script, body: Any, pieces: list[_Piece]) -> None:
        self.script = script
        self.pieces = pieces
        self.model = str(body.get("model", "fake-model"))
        self.id = "msg_" + uuid.uuid4().hex[:24]
        self.usage = _usage(script, body, pieces)
        self.block = -1  # index of the open content block, -1 before the first
        self.block_is_text = False

    @staticmethod
    def _event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {_dumps(data)}\n\n".encode()

    def error(self, status: int, message: str, error_type: str | None) -> dict[str, Any]:
        default_type = _ANTHROPIC_ERRORS.get(status, "api_error")
        return {"type": "error", "error": {"type": error_type or default_type, "message": message}}

    def start(self) -> bytes:
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.usage[0],
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
            },
        }
        return self._event("message_start", {"type": "message_start", "message": message}) + (
            self._event("ping", {"type": "ping"})
        )

    def _stop_block(self) -> bytes:
        if self.block < 0:
            return b""
        return self._event(
            "content_block_stop", {"type": "content_block_stop", "index": self.block}
        )

    def piece(self, piece: _Piece) -> bytes:
        out = b""
        if piece.text is not None:
            if not self.block_is_text or self.block < 0:
                out += self._stop_block()
                self.block += 1
                self.block_is_text = True
                out += self._event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": self.block,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            delta: dict[str, Any] = {"type": "text_delta", "text": piece.text}
        else:
            if piece.tool_first:
                out += self._stop_block()
                self.block += 1
                self.block_is_text = False
                call_id, name, _args = self.script.tool_calls[piece.tool_index]
                out += self._event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": self.block,
                        "content_block": {
                            "type": "tool_use",
                            "id": call_id,
                            "name": name,
                            "input": {},
                        },
                    },
                )
            delta = {"type": "input_json_delta", "partial_json": piece.args}
        return out + self._event(
            "content_block_delta",
            {"type": "content_block_delta", "index": self.block, "delta": delta},
        )

    def end(self) -> bytes:
        stop_reason = _ANTHROPIC_STOP.get(_finish_reason(self.script), "end_turn")
        return (
            self._stop_block()
            + self._event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": self.usage[1]},
                },
            )
            + self._event("message_stop", {"type": "message_stop"})
        )

    def stream_error(self, status: int, message: str, error_type: str | None) -> bytes:
        return self._event("error", self.error(status, message, error_type))

    def whole(self) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        text = "".join(p.text for p in self.pieces if p.text is not None)
        if text:
            content.append({"type": "text", "text": text})
        content += [
            {"type": "tool_use", "id": call_id, "name": name, "input": args}
            if isinstance(args, dict)
            else {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            for call_id, name, args in self.script.tool_calls
        ]
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": _ANTHROPIC_STOP.get(_finish_reason(self.script), "end_turn"),
            "stop_sequence": None,
            "usage": {"input_tokens": self.usage[0], "output_tokens": self.usage[1]},
        }


_Format = _OpenAIFormat | _AnthropicFormat


# --- the server ------------------------------------------------------------------------


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
    ) -> None:
        """``default`` plays when no script is queued: a fixed Script (e.g. an upstream
        that always answers 503), a function of the request, or None for the echo.
        ``record_requests=False`` keeps a long benchmark run from growing memory."""
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
        conn = _Connection(reader, writer)
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

    async def _answer(self, conn: _Connection, request: _HttpRequest) -> bool:
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
        fmt_class: type[_OpenAIFormat] | type[_AnthropicFormat]
        if path.endswith("/chat/completions"):
            fmt_class = _OpenAIFormat
        elif path.endswith("/messages"):
            fmt_class = _AnthropicFormat
        elif request.method == "GET" and path.endswith("/models"):
            # Some clients and readiness checks list models first.
            model = {"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}
            await self._send_json(conn, 200, {"object": "list", "data": [model]})
            return True
        elif request.method == "GET" and path in ("", "/health"):
            await self._send_json(conn, 200, {"status": "ok"})
            return True
        else:
            await self._send_json(
                conn, 404, {"error": {"message": "Not found", "type": "invalid_request_error"}}
            )
            return True
        if request.method != "POST" or not isinstance(body, dict):
            script = Script(error_status=400, error_message="Expected a JSON POST body.")
            body = {}
        elif not self._authorised(request.headers):
            script = Script(error_status=401, error_message="Invalid API key.")
        else:
            script = self._scripts.popleft() if self._scripts else self.default(recorded)
        fmt = fmt_class(script, body, _pieces(script))
        keep_alive = request.headers.get("connection", "").lower() != "close"
        response = _Response(conn)
        try:
            completed = await self._play(response, fmt, script, stream=bool(body.get("stream")))
        except _ClientGone:
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

    async def _send_json(
        self,
        conn: _Connection,
        status: int,
        payload: dict[str, Any],
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        data = _dumps(payload).encode()
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(data))),
            *extra,
        ]
        conn.writer.write(_head(status, headers) + data)
        await conn.writer.drain()

    async def _play(
        self, response: _Response, fmt: _Format, script: Script, *, stream: bool
    ) -> bool:
        """Play the script; False when it ended by cutting the connection."""
        request_id = (fmt.request_id_header, "req_" + uuid.uuid4().hex[:16])
        if not (stream and script.ttft_after_headers):
            await response.pause(script.ttft)
        if script.error_status is not None and not (stream and script.error_after is not None):
            status = script.error_status
            message = script.error_message or _reason_phrase(status)
            extra = [request_id]
            if status == 429 and script.retry_after is not None:
                extra.append(("retry-after", f"{script.retry_after:g}"))
            await self._send_json(
                response.conn, status, fmt.error(status, message, script.error_type), extra
            )
            return True
        if not stream:
            return await self._play_whole(response, fmt, script, request_id)

        head = _head(
            200,
            [
                ("content-type", "text/event-stream; charset=utf-8"),
                ("transfer-encoding", "chunked"),
                ("cache-control", "no-cache"),
                ("connection", "keep-alive"),
                request_id,
            ],
        )
        await response.write(head + _chunk(fmt.start()))
        if script.ttft_after_headers:
            await response.pause(script.ttft)
        for sent, piece in enumerate([*fmt.pieces, None]):
            if sent == script.cut_after:
                response.cut()
                return False
            if sent == script.hang_after:
                await response.hang()
            if sent == script.gate_after and script.gate is not None:
                await script.gate.wait()
                if script.delay_after_gate is not None:
                    script.token_delay = script.delay_after_gate
            if sent == script.error_after:
                status = script.error_status or (529 if isinstance(fmt, _AnthropicFormat) else 500)
                message = script.error_message or _reason_phrase(status)
                await response.write(
                    _chunk(fmt.stream_error(status, message, script.error_type)) + b"0\r\n\r\n"
                )
                return True
            if piece is None:
                break
            if sent and script.token_delay:
                await response.pause(script.token_delay)
            await response.write(_chunk(fmt.piece(piece)))
        await response.write(_chunk(fmt.end()) + b"0\r\n\r\n")
        return True

    async def _play_whole(
        self, response: _Response, fmt: _Format, script: Script, request_id: tuple[str, str]
    ) -> bool:
        count = len(fmt.pieces)
        if script.cut_after is not None and script.cut_after <= count:
            response.cut()
            return False
        if script.hang_after is not None and script.hang_after <= count:
            await response.hang()
        await response.pause(script.token_delay * max(0, count - 1))
        await self._send_json(response.conn, 200, fmt.whole(), [request_id])
        return True


# --- standalone ------------------------------------------------------------------------


async def _run_standalone(args: argparse.Namespace) -> None:
    ttft = args.ttft_ms / 1000
    delay = args.token_delay_ms / 1000
    behaviour = (
        fixed_tokens_behaviour(args.tokens, ttft, delay)
        if args.tokens is not None
        else echo_behaviour(ttft, delay)
    )
    server = FakeLLMServer(
        host=args.host,
        port=args.port,
        default=behaviour,
        api_key=args.api_key,
        record_requests=False,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with server:
        print(f"listening on {server.root_url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first token")
    parser.add_argument("--token-delay-ms", type=float, default=0.0, help="delay between tokens")
    parser.add_argument(
        "--tokens", type=int, default=None, help="reply with N tokens instead of echoing"
    )
    parser.add_argument("--api-key", default=None, help="require this key on every request")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run_standalone(args))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
