"""What resuming costs: database statements per resumed turn, CPU per logged event.

    python -m aichat_devtools.bench_resume [--database-url URL]

Runs the real server in-process against the fake upstream: a 200-token turn, then
counts the SQL statements (SQLAlchemy cursor events) of a StreamTurnEvents of the
finished turn (replayed from storage) and of the running one (this replica), and times
the per-event work the log adds to a turn's stream (numbering, naming, the frame, the
batch encoding a flush does) against rendering the event alone.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


async def _measure(database_url: str) -> dict[str, Any]:
    import grpc
    from aichat.v1 import chat_service_pb2 as cpb
    from aichat.v1 import (
        chat_service_pb2_grpc,
        resources_pb2,
        session_service_pb2,
        session_service_pb2_grpc,
    )

    from aichat_backend.config import Settings
    from aichat_backend.server import App
    from aichat_devtools.fake_llm import FakeLLMServer, Script

    statements = [0]

    @event.listens_for(Engine, "after_cursor_execute")
    def counted(*_args: Any) -> None:
        statements[0] += 1

    md = (("x-user-id", "bench"),)
    out: dict[str, Any] = {}
    async with FakeLLMServer() as fake:
        settings = Settings.model_validate(
            {
                "database_url": database_url,
                "grpc_address": "127.0.0.1:0",
                "openai_address": "",
                "llm_provider": "openai",
                "llm_model": "m",
                "llm_base_url": fake.base_url,
                "api_key": "k",
                "rate_rps": 0,
                "log_level": "warning",
            }
        )
        app = App(settings)
        port = await app.start("127.0.0.1:0")
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        chat = chat_service_pb2_grpc.ChatServiceStub(channel)
        sessions = session_service_pb2_grpc.SessionServiceStub(channel)
        try:
            s = await sessions.CreateSession(
                session_service_pb2.CreateSessionRequest(session=resources_pb2.Session()),
                metadata=md,
            )
            tokens = [f"w{i} " for i in range(200)]
            fake.enqueue(Script(tokens=tokens, token_delay=0.002))
            before = statements[0]
            flushes = app.turn_log.flushes
            events = [
                e
                async for e in chat.StreamChat(
                    cpb.StreamChatRequest(session=s.name, text="x"), metadata=md
                )
            ]
            await asyncio.sleep(0.3)  # the last flush
            out["turn_events"] = len(events)
            out["turn_statements_total"] = statements[0] - before
            out["turn_log_flushes"] = app.turn_log.flushes - flushes
            before = statements[0]
            replay = [
                e
                async for e in chat.StreamTurnEvents(
                    cpb.StreamTurnEventsRequest(name=events[0].turn, after_seq=0), metadata=md
                )
            ]
            out["resume_finished_turn_statements"] = statements[0] - before
            out["resume_finished_turn_events"] = len(replay)
            gate = asyncio.Event()
            fake.enqueue(Script(tokens=tokens, token_delay=0.002, gate_after=100, gate=gate))
            call = chat.StreamChat(cpb.StreamChatRequest(session=s.name, text="y"), metadata=md)
            first = await call.read()
            await asyncio.sleep(0.5)  # held at the gate, partly flushed
            before = statements[0]
            resumed = chat.StreamTurnEvents(
                cpb.StreamTurnEventsRequest(name=first.turn, after_seq=1), metadata=md
            )
            await resumed.read()
            gate.set()
            while await resumed.read() is not grpc.aio.EOF:
                pass
            out["resume_running_turn_statements_same_replica"] = statements[0] - before
            while await call.read() is not grpc.aio.EOF:
                pass
        finally:
            await channel.close()
            await app.stop(0.5)
    return out


def _per_event_cost(n: int = 200_000) -> dict[str, float]:
    from aichat_backend.api.turn_events import event_to_pb, frame_of, kind_of
    from aichat_backend.engine import events as ev
    from aichat_backend.turns.frames import encode

    delta = ev.TextDelta("lorem ")
    name = "sessions/0123456789abcdef0123456789abcdef/turns/0123456789abcdef0123456789abcdef"
    gc.disable()  # collections triggered by the measurement itself are not per-event work
    t0 = time.process_time()
    for i in range(n):
        event_to_pb(delta, i)
    base = time.process_time() - t0
    t0 = time.process_time()
    for i in range(n):
        out = event_to_pb(delta, i)
        out.turn = name
        frame = frame_of(kind_of(delta), out)
    logged = time.process_time() - t0
    frames = [frame] * 1000  # one flush's batch
    t0 = time.process_time()
    for _ in range(n // 1000):
        encode(frames)
    enc = time.process_time() - t0
    gc.enable()
    return {
        "render_us_per_event": round(base / n * 1e6, 3),
        "render_name_frame_us_per_event": round(logged / n * 1e6, 3),
        "added_us_per_event": round((logged - base) / n * 1e6, 3),
        "batch_encode_us_per_event": round(enc / n * 1e6, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    result = {"database": url.split(":", 1)[0], **asyncio.run(_measure(url))}
    result.update(_per_event_cost())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
