"""kill -9 mid-stream (issue 19C): what the client saw is kept, up to one flush period.

The event log stores a turn's events every AICHAT_TURN_EVENTS_FLUSH_SECONDS (0.1 s by
default); a crash loses at most the events of the last period. Here the test waits for
the flush of what the client saw before killing, so the bound says nothing may be lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sqlite3
import time
from pathlib import Path

import grpc
import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import chat_service_pb2_grpc, session_service_pb2_grpc
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb

from aichat_devtools.fake_llm import FakeLLMServer
from tests.support.grpc_helpers import md
from tests.support.resume import paced_200, seqs, text_of
from tests.support.serve_process import ServeProcess, child_env

pytestmark = pytest.mark.timeout(90)


def stored_last_seq(db: Path, turn_id: str) -> int:
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT last_seq FROM turn_logs WHERE turn_id = ?", (turn_id,)
        ).fetchone()
    return int(row[0]) if row else 0


async def wait_stored(db: Path, turn_id: str, seq: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while stored_last_seq(db, turn_id) < seq:
        assert time.monotonic() < deadline, "the log never stored what the client saw"
        await asyncio.sleep(0.02)


async def start(env: dict[str, str]) -> tuple[ServeProcess, grpc.aio.Channel]:
    process = await ServeProcess.start("serve", env=env)
    port = await process.wait_serving()
    return process, grpc.aio.insecure_channel(f"127.0.0.1:{port}")


THOUGHT = "first I weigh the question, then I count the words of the answer"


@pytest.mark.parametrize("reasoning", ["", THOUGHT], ids=["text", "reasoning-and-text"])
async def test_kill_9_mid_stream_keeps_what_was_streamed(
    tmp_path: Path, user: str, reasoning: str
) -> None:
    db = tmp_path / "aichat.db"
    gate = asyncio.Event()
    async with FakeLLMServer() as fake:
        env = child_env(
            tmp_path,
            database_url=f"sqlite:///{db}",
            replica_id="crashy",
            turn_lease_seconds="3",
            llm_provider="openai",
            llm_model="gpt-test",
            llm_base_url=fake.base_url,
            api_key="k",
            rate_rps="0",
            log_format="json",
        )
        process, channel = await start(env)
        try:
            sessions = session_service_pb2_grpc.SessionServiceStub(channel)
            chat = chat_service_pb2_grpc.ChatServiceStub(channel)
            session = (
                await sessions.CreateSession(
                    spb.CreateSessionRequest(session=rpb.Session()), metadata=md(user)
                )
            ).name
            # Held after 60 tokens (reasoning words first): the turn is mid-answer.
            fake.enqueue(dataclasses.replace(paced_200(gate), reasoning=reasoning))
            call = chat.StreamChat(
                cpb.StreamChatRequest(session=session, text="go"), metadata=md(user)
            )
            seen: list[cpb.StreamChatResponse] = []
            async for event in call:
                seen.append(event)
                if len(seen) == 40:
                    break
            turn_id = seen[0].turn.rsplit("/", 1)[1]
            await wait_stored(db, turn_id, 40)
            process.proc.send_signal(signal.SIGKILL)
            assert await process.wait_exit(10) == -signal.SIGKILL
            call.cancel()
        finally:
            await channel.close()
            await process.ensure_dead()
            gate.set()

        # The same replica, restarted: once the crashed turn's lease has run out (its
        # replica id alone proves nothing: another process may share it), it is ended.
        process, channel = await start(env)
        try:
            sessions = session_service_pb2_grpc.SessionServiceStub(channel)
            chat = chat_service_pb2_grpc.ChatServiceStub(channel)
            call = chat.StreamTurnEvents(
                cpb.StreamTurnEventsRequest(name=seen[0].turn), metadata=md(user), timeout=30
            )
            replay: list[cpb.StreamChatResponse] = []
            with pytest.raises(grpc.aio.AioRpcError) as failed:  # a failed turn's status
                async for event in call:
                    replay.append(event)
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
            page = await sessions.ListMessages(
                spb.ListMessagesRequest(parent=session), metadata=md(user)
            )
            answer = page.messages[-1]
            assert answer.state == rpb.MESSAGE_STATE_INTERRUPTED
            assert answer.text.startswith(text_of(seen)) and answer.text  # nothing seen lost
            # Every event stored, then the recovered end, numbered past all that was sent.
            assert seqs(replay[:-1]) == list(range(1, len(replay)))
            assert replay[-1].sequence > seen[-1].sequence
            assert [e.SerializeToString() for e in replay[:40]] == [
                e.SerializeToString() for e in seen
            ]
            ended = replay[-1].turn_ended
            assert ended.outcome == cpb.TURN_OUTCOME_FAILED
            assert ended.message.text == answer.text == text_of(replay)
            # The reasoning it streamed is kept with it too (what the client saw).
            thought = "".join(e.reasoning_delta.text for e in seen)
            assert thought == (THOUGHT if reasoning else "")
            assert answer.reasoning.text == ended.message.reasoning.text == thought
        finally:
            await channel.close()
            process.send_signal(signal.SIGTERM)
            await process.wait_exit(20)
