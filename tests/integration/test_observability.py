"""Metrics move with the actions that should move them; logs carry ids, never content."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import urllib.request

import grpc
import pytest
from aichat.v1 import chat_service_pb2 as cpb

from aichat_backend import logs
from aichat_devtools.fake_llm import Script
from tests.support.chat import chat_stack
from tests.support.grpc_helpers import md

pytestmark = pytest.mark.timeout(30)


def scrape(port: int) -> dict[str, float]:
    """Prometheus text → {"name{labels}": value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def value(samples: dict[str, float], name: str, **labels: str) -> float:
    for key, v in samples.items():
        if key.split("{", 1)[0] != name:
            continue
        if all(f'{k}="{val}"' in key for k, val in labels.items()):
            return v
    return 0.0


async def test_a_scripted_conversation_moves_the_metrics(sqlite_url: str, user: str) -> None:
    async with chat_stack("openai", sqlite_url, metrics_address="127.0.0.1:0") as stack:
        port = stack.server.app.metrics_port
        assert port
        session = await stack.new_session(user)
        stack.fake.enqueue(Script(tokens=["a", "b", "c"], input_tokens=7, output_tokens=3))
        await stack.turn(user, session, "hi")
        stack.fake.enqueue(Script(error_status=503), Script(error_status=503))
        with pytest.raises(grpc.aio.AioRpcError):
            await stack.turn(user, session, "again")
        with pytest.raises(grpc.aio.AioRpcError):
            await stack.server.sessions.ListSessions(
                __import__("aichat.v1.session_service_pb2", fromlist=["x"]).ListSessionsRequest()
            )
        # A call's handled count is recorded as its handler returns, which can be just
        # after its client has the status: wait for the last call's before reading.
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            s = scrape(port)
            refused = dict(grpc_code="UNAUTHENTICATED", grpc_method="ListSessions")
            if value(s, "grpc_server_handled_total", **refused) >= 1:
                break
            assert asyncio.get_running_loop().time() < deadline, "ListSessions never counted"
            await asyncio.sleep(0.05)
        method = dict(grpc_service="aichat.v1.ChatService", grpc_method="StreamChat")
        assert value(s, "grpc_server_started_total", **method) == 2
        assert value(s, "grpc_server_handled_total", grpc_code="OK", **method) == 1
        assert value(s, "grpc_server_handled_total", grpc_code="UNAVAILABLE", **method) == 1
        assert (
            value(
                s,
                "grpc_server_handled_total",
                grpc_code="UNAUTHENTICATED",
                grpc_method="ListSessions",
            )
            == 1
        )
        assert value(s, "grpc_server_handling_seconds_count", **method) == 2
        assert value(s, "aichat_time_to_first_token_seconds_count", model="gpt-test") == 1
        assert value(s, "aichat_tokens_total", model="gpt-test", direction="input") == 7
        assert value(s, "aichat_tokens_total", model="gpt-test", direction="output") == 3
        assert (
            value(
                s, "aichat_provider_errors_total", provider="openai", reason="PROVIDER_UNAVAILABLE"
            )
            == 1
        )
        assert value(s, "aichat_active_streams") == 0


async def test_active_streams_counts_open_turns(sqlite_url: str, user: str) -> None:
    async with chat_stack("openai", sqlite_url, metrics_address="127.0.0.1:0") as stack:
        session = await stack.new_session(user)
        stack.fake.enqueue(Script(tokens=["x"], hang_after=1))
        call = stack.server.chat.StreamChat(
            cpb.StreamChatRequest(session=session, text="hold"), metadata=md(user)
        )
        async for event in call:
            if event.WhichOneof("event") == "text_delta":
                break
        assert value(scrape(stack.server.app.metrics_port), "aichat_active_streams") == 1
        call.cancel()
        await stack.server.app.engine.drain_writes()


async def test_logs_never_carry_content_or_secrets(sqlite_url: str, user: str) -> None:
    secret_key = "sk-SECRET-KEY-0123456789"
    secret_text = "MY-SECRET-MESSAGE-TEXT"
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    out = io.StringIO()
    # The service's own logging set-up, at its most talkative level.
    logs.configure("debug", "json", stream=out)
    try:
        async with chat_stack("openai", sqlite_url, api_key=secret_key) as stack:
            session = await stack.new_session(user, display_name="SECRET-TITLE")
            stack.fake.enqueue(Script(tokens=["SECRET-", "ANSWER-TOKENS"]))
            await stack.turn(user, session, secret_text)
            stack.fake.enqueue(Script(error_status=401))
            with pytest.raises(grpc.aio.AioRpcError):
                await stack.turn(user, session, secret_text)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = out.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    access = [r for r in records if r.get("logger") == "aichat_backend.access"]
    streams = [r for r in access if r["method"] == "/aichat.v1.ChatService/StreamChat"]
    assert [r["code"] for r in streams] == ["OK", "INTERNAL"]
    assert all(r["user"] == user and r["request_id"] and "duration_ms" in r for r in streams)
    for line in lines:
        for secret in (secret_key, secret_text, "SECRET-TITLE", "SECRET-", "Bearer"):
            assert secret not in line, line


async def test_usage_is_recorded_per_user_and_model(database_url: str, user: str) -> None:
    from aichat_backend.store.usage_repo import tokens_today

    async with chat_stack("openai", database_url) as stack:
        session = await stack.new_session(user)
        stack.fake.enqueue(
            Script(tokens=["a"], input_tokens=10, output_tokens=2),
            Script(tokens=["b"], input_tokens=20, output_tokens=3),
        )
        await stack.turn(user, session, "one")
        await stack.turn(user, session, "two")
        async with stack.server.app.db.transaction() as tx:
            assert await tokens_today(tx, user) == 35
            from sqlalchemy import select

            from aichat_backend.store.tables import usage_daily

            rows = (
                await tx.execute(select(usage_daily).where(usage_daily.c.user_id == user))
            ).all()
        assert [(r.model, r.input_tokens, r.output_tokens, r.turns) for r in rows] == [
            ("gpt-test", 30, 5, 2)
        ]
