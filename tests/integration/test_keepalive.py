"""Clients that ping often keep long idle streams (gRPC's defaults would cut them off)."""

from __future__ import annotations

import grpc
import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import chat_service_pb2_grpc

from aichat_devtools.fake_llm import Script
from tests.support.chat import chat_stack
from tests.support.grpc_helpers import md

pytestmark = pytest.mark.timeout(30)

# A client that pings every 500 ms even with nothing in flight: with grpc's server
# defaults (pings no more often than every 5 min, 2 strikes) this connection is closed
# with "too many pings" within a couple of seconds.
EAGER_PINGER = [
    ("grpc.keepalive_time_ms", 500),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]


async def test_eager_pinging_client_keeps_a_quiet_stream(sqlite_url: str, user: str) -> None:
    # No heartbeats: the stream is silent for 3 s while the model "thinks".
    async with chat_stack("openai", sqlite_url, heartbeat_seconds=60) as stack:
        session = await stack.new_session(user)
        stack.fake.enqueue(Script(tokens=["finally"], ttft=3.0))
        async with grpc.aio.insecure_channel(stack.server.target, options=EAGER_PINGER) as channel:
            chat = chat_service_pb2_grpc.ChatServiceStub(channel)
            call = chat.StreamChat(
                cpb.StreamChatRequest(session=session, text="slow"), metadata=md(user)
            )
            events = [e async for e in call]
        assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
        assert events[-1].turn_ended.message.text == "finally"
