"""The benchmark's clients, one per arm, all timing a stream the same way.

Every arm answers ``stream(text)`` with a :class:`StreamResult`: when the request left,
the time to the first text, the gaps between text-bearing messages and how many
upstream tokens arrived (each fake token ends with a space, so coalesced messages count
right). Clocks are ``time.monotonic()`` (CLOCK_MONOTONIC, shared with the other
processes of the run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx2
import openai
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import chat_service_pb2_grpc, session_service_pb2_grpc
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb
from grpc_health.v1 import health_pb2, health_pb2_grpc

COMPLETED = cpb.TURN_OUTCOME_COMPLETED


@dataclass(slots=True)
class StreamResult:
    t_send: float = 0.0
    ttft: float | None = None
    t_end: float = 0.0
    gaps: list[float] = field(default_factory=list)
    messages: int = 0  # messages that carried text
    tokens: int = 0
    ok: bool = False
    error: str = ""
    # (arrival time, tokens) of every text message, when the caller asks for them
    marks: list[tuple[float, int]] | None = None


@dataclass(slots=True)
class UnaryResult:
    t_send: float
    latency: float
    ok: bool
    error: str = ""


def _record_text(
    res: StreamResult, text: str, last: float | None, on_first: Callable[[], None] | None
) -> float:
    now = time.monotonic()
    if last is None:
        res.ttft = now - res.t_send
        if on_first is not None:
            on_first()
    else:
        res.gaps.append(now - last)
    res.messages += 1
    tokens = text.count(" ")
    res.tokens += tokens
    if res.marks is not None:
        res.marks.append((now, tokens))
    return now


class Arm:
    """One way of reaching the same upstream."""

    name: str = ""
    kind: str = ""  # "direct", "backend", "relay", "envoy"

    async def stream(
        self,
        text: str,
        tag: str = "",
        on_first: Callable[[], None] | None = None,
        into: StreamResult | None = None,
    ) -> StreamResult:
        raise NotImplementedError

    async def unary(self, text: str) -> UnaryResult:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


class DirectArm(Arm):
    """A: the openai SDK straight to the upstream."""

    kind = "direct"

    def __init__(self, name: str, base_url: str) -> None:
        self.name = name
        # The SDK on the same HTTP client as the backend's default: the direct call
        # is the fastest the SDK allows, not a slower baseline that flatters B.
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key="bench",
            max_retries=0,
            timeout=120,
            http_client=openai.DefaultAioHttpClient(),
        )

    async def stream(
        self,
        text: str,
        tag: str = "",
        on_first: Callable[[], None] | None = None,
        into: StreamResult | None = None,
    ) -> StreamResult:
        res = into if into is not None else StreamResult()
        res.t_send = time.monotonic()
        last: float | None = None
        try:
            stream = await self._client.chat.completions.create(
                model="bench", messages=[{"role": "user", "content": text}], stream=True
            )
            async with stream:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        last = _record_text(res, chunk.choices[0].delta.content, last, on_first)
            res.ok = True
        except openai.APIError as exc:
            res.error = type(exc).__name__
        res.t_end = time.monotonic()
        return res

    async def aclose(self) -> None:
        await self._client.close()


class SessionPool:
    """Sessions free for a turn (one turn at a time per session), spread over users.

    A session whose turn failed is set aside, not reused: a turn that could not store
    its end keeps the session claimed until its lease runs out, and would fail every
    turn after it with SESSION_BUSY. ``GrpcArm.top_up`` replaces them between phases.
    """

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._free: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        for pair in pairs:
            self._free.put_nowait(pair)
        self.size = len(pairs)
        self.waits = 0  # turns that found no free session and had to wait for one
        self.set_aside = 0

    @property
    def free(self) -> int:
        return self._free.qsize()

    async def acquire(self) -> tuple[str, str]:
        if self._free.empty():
            self.waits += 1
        return await self._free.get()

    def release(self, pair: tuple[str, str], ok: bool = True) -> None:
        if ok:
            self._free.put_nowait(pair)
        else:
            self.set_aside += 1

    def add(self, pairs: Sequence[tuple[str, str]]) -> None:
        for pair in pairs:
            self._free.put_nowait(pair)


class GrpcArm(Arm):
    """B (the backend) or F (the bare relay): ``ChatService.StreamChat`` over gRPC."""

    def __init__(self, name: str, target: str, kind: str) -> None:
        self.name = name
        self.kind = kind
        self.target = target
        self.channel = grpc.aio.insecure_channel(target)
        self.chat = chat_service_pb2_grpc.ChatServiceStub(self.channel)
        self.sessions = session_service_pb2_grpc.SessionServiceStub(self.channel)
        self.pool = SessionPool([("bench-user", "sessions/none")])
        self.turns = 0  # turns started (stream and unary)
        self.create_failures: dict[str, int] = {}  # CreateSession errors (retried)

    async def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        health = health_pb2_grpc.HealthStub(self.channel)
        while True:
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError as exc:
                if self.kind == "relay" and exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    return  # the relay has no health service: it answered, it is up
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} at {self.target} is not serving")
            await asyncio.sleep(0.1)

    async def make_sessions(self, count: int, users: int = 16, parallel: int = 16) -> None:
        """Create ``count`` sessions (over ``users`` users) for this arm's turns."""
        self.session_target = count
        if self.kind != "backend":
            self.pool = SessionPool([("bench-user", "sessions/none")] * max(1, count))
            return
        self.pool = SessionPool(await self._create(count, users, parallel))

    async def top_up(self, users: int = 16, parallel: int = 16) -> int:
        """Replace the sessions set aside since the last call; returns how many."""
        missing = getattr(self, "session_target", 0) - self.pool.free
        if missing <= 0:
            return 0
        if self.kind != "backend":  # the relay keeps nothing: any placeholder will do
            self.pool.add([("bench-user", "sessions/none")] * missing)
            return 0
        self.pool.add(await self._create(missing, users, parallel))
        return missing

    async def _create(self, count: int, users: int, parallel: int) -> list[tuple[str, str]]:
        sem = asyncio.Semaphore(parallel)
        pairs: list[tuple[str, str]] = []

        async def one(i: int) -> None:
            user = f"bench-{i % users}"
            for attempt in range(6):
                try:
                    async with sem:
                        s = await self.sessions.CreateSession(
                            spb.CreateSessionRequest(
                                session=rpb.Session(display_name=f"bench {i}")
                            ),
                            metadata=(("x-user-id", user),),
                            timeout=30,
                        )
                    pairs.append((user, s.name))
                    return
                except grpc.aio.AioRpcError as exc:
                    # A backend still storing the ends of cut-off turns may say
                    # UNAVAILABLE for a while: wait, then give up on this one session.
                    self.create_failures[exc.code().name] = (
                        self.create_failures.get(exc.code().name, 0) + 1
                    )
                    await asyncio.sleep(0.5 * (attempt + 1))

        await asyncio.gather(*(one(i) for i in range(count)))
        return pairs

    async def stream(
        self,
        text: str,
        tag: str = "",
        on_first: Callable[[], None] | None = None,
        into: StreamResult | None = None,
    ) -> StreamResult:
        pair = await self.pool.acquire()
        self.turns += 1
        metadata: tuple[tuple[str, str], ...] = (("x-user-id", pair[0]),)
        if tag:
            metadata += (("x-request-id", tag),)
        res = into if into is not None else StreamResult()
        res.t_send = time.monotonic()
        last: float | None = None
        call = self.chat.StreamChat(
            cpb.StreamChatRequest(session=pair[1], text=text), metadata=metadata
        )
        try:
            async for msg in call:
                kind = msg.WhichOneof("event")
                if kind == "text_delta":
                    last = _record_text(res, msg.text_delta.text, last, on_first)
                elif kind == "turn_ended" and msg.turn_ended.outcome != COMPLETED:
                    res.error = cpb.TurnOutcome.Name(msg.turn_ended.outcome)
            res.ok = not res.error
        except grpc.aio.AioRpcError as exc:
            res.error = exc.code().name
        except asyncio.CancelledError:
            res.error = "CANCELLED"  # its session may stay claimed until the end is stored
            raise
        finally:
            res.t_end = time.monotonic()
            if not call.done():
                call.cancel()
            self.pool.release(pair, res.ok or not res.error)
        return res

    async def unary(self, text: str) -> UnaryResult:
        pair = await self.pool.acquire()
        self.turns += 1
        start = time.monotonic()
        try:
            reply = await self.chat.SendMessage(
                cpb.SendMessageRequest(session=pair[1], text=text),
                metadata=(("x-user-id", pair[0]),),
                timeout=30,
            )
            ok = reply.outcome == COMPLETED
            result = UnaryResult(start, time.monotonic() - start, ok, "" if ok else "NOT_DONE")
        except grpc.aio.AioRpcError as exc:
            result = UnaryResult(start, time.monotonic() - start, False, exc.code().name)
        self.pool.release(pair, result.ok)
        return result

    async def aclose(self) -> None:
        await self.channel.close()


class EnvoyArm(Arm):
    """C: REST/SSE through Envoy's transcoder to the backend."""

    kind = "envoy"

    def __init__(self, name: str, base_url: str, backend: GrpcArm, tokens: dict[str, str]) -> None:
        self.name = name
        self.tokens = tokens  # user -> bearer token (Envoy's jwt_authn makes x-user-id)
        self.base_url = base_url.rstrip("/")
        self.backend = backend  # sessions are created over gRPC, on the same database
        self._client = httpx2.AsyncClient(
            timeout=120, limits=httpx2.Limits(max_connections=2000, max_keepalive_connections=2000)
        )
        self.pool = backend.pool

    async def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx2.HTTPError):
                r = await self._client.get(self.base_url + "/v1/chat/health", timeout=1.0)
                if r.status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: Envoy at {self.base_url} is not answering")
            await asyncio.sleep(0.1)

    async def stream(
        self,
        text: str,
        tag: str = "",
        on_first: Callable[[], None] | None = None,
        into: StreamResult | None = None,
    ) -> StreamResult:
        pair = await self.pool.acquire()
        res = into if into is not None else StreamResult()
        res.t_send = time.monotonic()
        last: float | None = None
        url = f"{self.base_url}/v1/chat/{pair[1]}:streamChat"
        headers = {
            "authorization": f"Bearer {self.tokens[pair[0]]}",
            "accept": "text/event-stream",
        }
        try:
            async with self._client.stream(
                "POST", url, json={"text": text}, headers=headers
            ) as response:
                if response.status_code != 200:
                    res.error = f"HTTP_{response.status_code}"
                else:
                    async for line in response.aiter_lines():
                        event = _sse_event(line)
                        if event is None:
                            continue
                        delta = event.get("textDelta")
                        if delta is not None:
                            last = _record_text(res, delta.get("text", ""), last, on_first)
                        ended = event.get("turnEnded")
                        if ended is not None and ended.get("outcome") != "TURN_OUTCOME_COMPLETED":
                            res.error = str(ended.get("outcome"))
                    res.ok = not res.error
        except httpx2.HTTPError as exc:
            res.error = type(exc).__name__
        finally:
            res.t_end = time.monotonic()
            self.pool.release(pair, res.ok or not res.error)
        return res

    async def aclose(self) -> None:
        await self._client.aclose()


def _sse_event(line: str) -> dict[str, Any] | None:
    """One JSON event from an SSE ``data:`` line (or a bare JSON line)."""
    line = line.strip().rstrip(",")
    if line.startswith("data:"):
        line = line[5:].strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if isinstance(value, dict):
        result = value.get("result", value)
        return result if isinstance(result, dict) else None
    return None
