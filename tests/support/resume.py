"""Helpers for resuming turns: cut a stream after N events, read a resumed one."""

from __future__ import annotations

import asyncio

import grpc
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import chat_service_pb2_grpc

from aichat_devtools.fake_llm import Script
from tests.support.grpc_helpers import md

TOKENS_200 = [f"w{i:03d} " for i in range(200)]


def paced_200(gate: asyncio.Event) -> Script:
    """200 tokens, the first 60 slower than the engine's coalescing period (each its own
    event, so event 50 exists), then held at the gate (the turn is still running when a
    client resumes it), then the rest quickly."""
    return Script(
        tokens=TOKENS_200, token_delay=0.06, gate_after=60, gate=gate, delay_after_gate=0.002
    )


async def cut_after(
    chat: chat_service_pb2_grpc.ChatServiceStub,
    user: str,
    request: cpb.StreamChatRequest,
    count: int,
) -> list[cpb.StreamChatResponse]:
    """The first ``count`` events of a StreamChat, then the caller hangs up."""
    call = chat.StreamChat(request, metadata=md(user))
    seen: list[cpb.StreamChatResponse] = []
    async for event in call:
        seen.append(event)
        if len(seen) == count:
            break
    call.cancel()
    return seen


async def resume(
    chat: chat_service_pb2_grpc.ChatServiceStub, user: str, turn: str, after: int
) -> list[cpb.StreamChatResponse]:
    call = chat.StreamTurnEvents(
        cpb.StreamTurnEventsRequest(name=turn, after_seq=after), metadata=md(user), timeout=30
    )
    return [e async for e in call]


def text_of(events: list[cpb.StreamChatResponse]) -> str:
    return "".join(e.text_delta.text for e in events if e.HasField("text_delta"))


def without_keepalives(events: list[cpb.StreamChatResponse]) -> list[cpb.StreamChatResponse]:
    """The turn's events among what a resuming reader got.

    A reader waiting for events (another replica recovering the turn, or holding it
    mid-answer) gets keep-alive heartbeats with sequence 0: no event of the turn. They are
    checked to be heartbeats and set aside. A turn's own heartbeats (it was silent for
    ``AICHAT_HEARTBEAT_SECONDS``: a turn held mid-answer on a loaded machine) are numbered
    events of the turn, stored and replayed like any other, so they stay."""
    keepalives = [e for e in events if e.sequence == 0]
    assert all(e.WhichOneof("event") == "heartbeat" for e in keepalives), keepalives
    return [e for e in events if e.sequence != 0]


def seqs(events: list[cpb.StreamChatResponse]) -> list[int]:
    return [e.sequence for e in events]


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    try:
        async for _ in call:  # type: ignore[attr-defined]
            pass
    except grpc.aio.AioRpcError as err:
        return err
    raise AssertionError("the call succeeded")
