"""Real replicas (``aichat-backend serve`` processes) on one PostgreSQL, for crash tests.

Each replica is a child process of its own; ``kill`` is a real SIGKILL (no shutdown, no
last flush), after which the replica stays down until ``start`` is called again. The
database is read directly (asyncpg) to wait for what a replica has stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import grpc
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import chat_service_pb2_grpc, session_service_pb2_grpc
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb

from aichat_devtools.fake_llm import FakeLLMServer
from tests.support.grpc_helpers import error_info, md
from tests.support.resume import paced_200
from tests.support.serve_process import ServeProcess, child_env


class Replica:
    def __init__(self, name: str, process: ServeProcess, port: int) -> None:
        self.name = name
        self.process = process
        self.port = port
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.sessions = session_service_pb2_grpc.SessionServiceStub(self.channel)
        self.chat = chat_service_pb2_grpc.ChatServiceStub(self.channel)

    async def new_session(self, user: str) -> str:
        created = await self.sessions.CreateSession(
            spb.CreateSessionRequest(session=rpb.Session()), metadata=md(user)
        )
        return created.name

    async def messages(self, user: str, session: str) -> list[rpb.Message]:
        page = await self.sessions.ListMessages(
            spb.ListMessagesRequest(parent=session), metadata=md(user)
        )
        return list(page.messages)

    async def resume(
        self, user: str, turn: str, after: int = 0, timeout: float = 60
    ) -> tuple[list[cpb.StreamChatResponse], grpc.aio.AioRpcError | None]:
        """Every event of StreamTurnEvents, and the RPC's error if it ended with one."""
        call = self.chat.StreamTurnEvents(
            cpb.StreamTurnEventsRequest(name=turn, after_seq=after),
            metadata=md(user),
            timeout=timeout,
        )
        events: list[cpb.StreamChatResponse] = []
        try:
            async for event in call:
                events.append(event)
        except grpc.aio.AioRpcError as err:
            return events, err
        return events, None


@dataclass
class Cluster:
    """Replicas sharing one PostgreSQL database and one fake upstream."""

    database_url: str  # SQLAlchemy's (postgresql+asyncpg://…)
    tmp_path: Path
    fake: FakeLLMServer
    settings: dict[str, str]
    replicas: dict[str, Replica] = field(default_factory=dict)

    async def start(self, name: str, *, replica_id: str | None = None, **extra: str) -> Replica:
        """Start replica ``name``; its replica id is ``replica_id`` (or the default when
        None: the setting is left unset)."""
        values = dict(self.settings, **extra)
        if replica_id is not None:
            values["replica_id"] = replica_id
        env = child_env(self.tmp_path / name, **values)
        process = await ServeProcess.start("serve", env=env)
        replica = Replica(name, process, await process.wait_serving())
        self.replicas[name] = replica
        return replica

    async def kill(self, name: str) -> None:
        """kill -9: no shutdown, no last flush. The replica stays down."""
        replica = self.replicas.pop(name)
        replica.process.proc.send_signal(signal.SIGKILL)
        assert await replica.process.wait_exit(10) == -signal.SIGKILL
        await replica.channel.close()

    async def crash_mid_turn(
        self, name: str, user: str, session: str, events: int, *, stored: bool = True
    ) -> list[cpb.StreamChatResponse]:
        """A detached turn on replica ``name``, held mid-answer (after 60 tokens); its
        first ``events`` events read (and, with ``stored``, stored), then kill -9."""
        gate = asyncio.Event()
        self.fake.enqueue(paced_200(gate))
        request = cpb.StreamChatRequest(
            session=session, text="talk", options=cpb.ChatOptions(detached=True)
        )
        call = self.replicas[name].chat.StreamChat(request, metadata=md(user))
        try:
            seen = await read_until(call, events)
            if stored:
                await self.wait_stored(seen[0].turn.rsplit("/", 1)[1], events)
            await self.kill(name)
        finally:
            call.cancel()
            gate.set()
        return seen

    async def stop(self, name: str) -> None:
        replica = self.replicas.pop(name)
        await replica.channel.close()
        replica.process.send_signal(signal.SIGTERM)
        assert await replica.process.wait_exit(30) == 0, replica.process.stderr[-3000:]

    async def close(self) -> None:
        for name in list(self.replicas):
            replica = self.replicas.pop(name)
            await replica.channel.close()
            replica.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(Exception):
                await replica.process.wait_exit(20)
            await replica.process.ensure_dead()

    # --- the shared database, read directly --------------------------------------------

    async def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        dsn = self.database_url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def stored_last_seq(self, turn_id: str) -> int:
        """The last sequence number stored in the turn's batches (0: none yet)."""
        rows = await self.query(
            "SELECT max(last_seq) AS s FROM turn_event_batches WHERE turn_id = $1", turn_id
        )
        return int(rows[0]["s"] or 0)

    async def wait_stored(self, turn_id: str, seq: int) -> None:
        """Until the turn's log holds ``seq`` (the test's timeout bounds the wait)."""
        while (stored := await self.stored_last_seq(turn_id)) < seq:
            assert stored >= 0
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def cluster(database_url: str, tmp_path: Path, **settings: str) -> AsyncIterator[Cluster]:
    async with FakeLLMServer() as fake:
        values = {
            "database_url": database_url,
            "llm_provider": "openai",
            "llm_model": "gpt-test",
            "llm_base_url": fake.base_url,
            "api_key": "k",
            "rate_rps": "0",
            "max_concurrent_turns_per_user": "0",
            "log_format": "json",
        }
        values.update(settings)
        c = Cluster(database_url, tmp_path, fake, values)
        try:
            yield c
        finally:
            await c.close()


async def read_until(call: Any, count: int) -> list[cpb.StreamChatResponse]:
    """The first ``count`` events of a stream (the call is left open)."""
    seen: list[cpb.StreamChatResponse] = []
    async for event in call:
        seen.append(event)
        if len(seen) == count:
            break
    return seen


async def send_when_free(
    replica: Replica, user: str, request: cpb.StreamChatRequest, within: float = 120
) -> tuple[Any, cpb.StreamChatResponse, float]:
    """Send ``request`` until the session takes it (SESSION_BUSY while a crashed turn's
    lease lasts): the open call, its first event and when the session took it."""
    deadline = time.monotonic() + within
    while True:
        call = replica.chat.StreamChat(request, metadata=md(user))
        try:
            first = await call.read()
        except grpc.aio.AioRpcError as err:
            if error_info(err).reason != "SESSION_BUSY" or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)  # the RetryInfo hint is 1 s; finer here to measure
            continue
        assert first is not grpc.aio.EOF
        return call, first, time.monotonic()


async def read_rest(call: Any) -> list[cpb.StreamChatResponse]:
    """What is left of a stream read with ``call.read()`` (see ``send_when_free``)."""
    events: list[cpb.StreamChatResponse] = []
    while (event := await call.read()) is not grpc.aio.EOF:
        events.append(event)
    return events


def text_of(events: list[cpb.StreamChatResponse]) -> str:
    return "".join(e.text_delta.text for e in events if e.HasField("text_delta"))


def reason_of(status: Any) -> str:
    from google.rpc import error_details_pb2

    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""
