"""SIGTERM with a turn in flight: the client gets its last event, the partial answer is
stored, the process exits 0, and a restarted server serves the same session."""

from __future__ import annotations

import signal
from pathlib import Path

import grpc
import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import chat_service_pb2_grpc, session_service_pb2, session_service_pb2_grpc
from aichat.v1 import resources_pb2 as rpb

from aichat_devtools.fake_llm import FakeLLMServer, Script
from tests.support.grpc_helpers import error_info, md
from tests.support.serve_process import ServeProcess, child_env

pytestmark = pytest.mark.timeout(60)


async def test_sigterm_mid_turn(tmp_path: Path, user: str) -> None:
    async with FakeLLMServer() as fake:
        env = child_env(
            tmp_path / "data",
            llm_base_url=fake.base_url,
            api_key="k",
            llm_model="gpt-test",
            shutdown_grace_seconds="1",
            log_format="json",
        )
        process = await ServeProcess.start("serve", env=env)
        port = await process.wait_serving()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            sessions = session_service_pb2_grpc.SessionServiceStub(channel)
            chat = chat_service_pb2_grpc.ChatServiceStub(channel)
            created = await sessions.CreateSession(
                session_service_pb2.CreateSessionRequest(session=rpb.Session()), metadata=md(user)
            )
            fake.enqueue(Script(tokens=["half ", "an answer"], hang_after=2))
            call = chat.StreamChat(
                cpb.StreamChatRequest(session=created.name, text="long one"), metadata=md(user)
            )
            events = []
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for event in call:
                    events.append(event)
                    text = "".join(e.text_delta.text for e in events)
                    if text == "half an answer":
                        process.send_signal(signal.SIGTERM)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert error_info(err.value).reason == "SERVER_SHUTTING_DOWN"
            ended = events[-1].turn_ended
            assert ended.outcome == cpb.TURN_OUTCOME_CANCELLED
            assert ended.message.text == "half an answer"
        assert await process.wait_exit(15) == 0

        restarted = await ServeProcess.start("serve", env=env)
        port = await restarted.wait_serving()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                sessions = session_service_pb2_grpc.SessionServiceStub(channel)
                page = await sessions.ListMessages(
                    session_service_pb2.ListMessagesRequest(parent=created.name), metadata=md(user)
                )
                assert [m.text for m in page.messages] == ["long one", "half an answer"]
                assert page.messages[1].state == rpb.MESSAGE_STATE_INCOMPLETE
                fake.enqueue(Script(tokens=["back again"]))
                chat = chat_service_pb2_grpc.ChatServiceStub(channel)
                call = chat.StreamChat(
                    cpb.StreamChatRequest(session=created.name, text="still there?"),
                    metadata=md(user),
                )
                after = [e async for e in call]
                assert after[-1].turn_ended.message.text == "back again"
        finally:
            restarted.send_signal(signal.SIGTERM)
            assert await restarted.wait_exit(15) == 0
