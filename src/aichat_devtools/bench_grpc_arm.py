"""The gRPC arms, B (the backend) and F (the bare relay), and the pool of sessions their
turns take one at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import grpc
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import chat_service_pb2_grpc, session_service_pb2_grpc
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aichat_devtools.bench_clients import COMPLETED, Arm, StreamResult, UnaryResult, record_text


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
                    last = record_text(res, msg.text_delta.text, last, on_first)
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
