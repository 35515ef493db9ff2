"""Storage per user (issue 24.6): what a user stores is bounded by a quota.

Five requests of 10 MB attachments grew the database by 104 MB in 1.9 s: nothing counted
what a user stored. Now every message's bytes (text, reasoning, attachments with the text
extracted from them) are counted in one row per user, kept by each write and delete; a
message past the quota is refused with RESOURCE_EXHAUSTED, STORAGE_QUOTA_EXCEEDED, and
the counter is the database's, so every replica holds the user to the same quota.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from aichat.v1 import admin_service_pb2 as apb
from aichat.v1 import admin_service_pb2_grpc
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb
from sqlalchemy import func, select

from aichat_backend.store.tables import messages, tool_calls
from aichat_devtools.fake_llm import FakeLLMServer, Script
from tests.support.chat import ChatStack, provider_settings
from tests.support.grpc_helpers import error_info, md
from tests.support.server import make_settings, running_server
from tests.support.tool_stack import tool_stack

pytestmark = pytest.mark.timeout(120)

ANSWER = "stored answer"  # every turn's answer: its bytes count too
FILE = 400_000  # a text file counts twice: its bytes and the text the model is shown
QUOTA = 2_000_000
ADMIN = "ops"


def note(n: int) -> rpb.Attachment:
    return rpb.Attachment(filename=f"n{n}.txt", mime_type="text/plain", content=b"x" * FILE)


def message_bytes(text: str, files: int = 0) -> int:
    return len(text.encode()) + files * 2 * FILE


@asynccontextmanager
async def stacks(
    database_url: str, replicas: int = 1, **overrides: object
) -> AsyncIterator[list[ChatStack]]:
    async with FakeLLMServer(default=Script(text=ANSWER)) as fake:
        values = provider_settings("openai", fake)
        # Five turns of one user at once (the probe), not the per-user turn cap.
        values.update(
            storage_quota_bytes=QUOTA,
            admin_users=ADMIN,
            max_concurrent_turns_per_user=0,
            **overrides,
        )
        async with asyncio.timeout(60):
            servers = [
                running_server(make_settings(database_url, **values)) for _ in range(replicas)
            ]
            running = [await s.__aenter__() for s in servers]
        try:
            yield [ChatStack(server=r, fake=fake, provider="openai") for r in running]
        finally:
            for s in reversed(servers):
                await s.__aexit__(None, None, None)


async def my_usage(stack: ChatStack, user: str) -> spb.MyUsage:
    return await stack.server.sessions.GetMyUsage(spb.GetMyUsageRequest(), metadata=md(user))


async def send(stack: ChatStack, user: str, session: str, text: str, files: int = 0) -> str:
    """The turn's outcome: "ok", or the refusal's ErrorInfo reason."""
    try:
        events = await stack.turn(user, session, text, attachments=[note(n) for n in range(files)])
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
        info = error_info(exc)
        assert int(info.metadata["quota_bytes"]) == QUOTA
        return info.reason
    assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
    return "ok"


async def test_parallel_attachments_stop_at_the_quota(database_url: str) -> None:
    """The issue's probe, scaled down: five parallel requests with 0.8 MB each of files,
    against a 2 MB quota. Before: every one was stored (4 MB, 2 MB past the quota)."""
    user = f"filer-{uuid.uuid4().hex[:8]}"
    async with stacks(database_url) as (stack,):
        sessions = [await stack.new_session(user) for _ in range(5)]
        outcomes = await asyncio.gather(*(send(stack, user, s, "keep", files=1) for s in sessions))
        accepted = outcomes.count("ok")
        stored = accepted * (message_bytes("keep", 1) + len(ANSWER))
        print(f"\nquota {QUOTA} B: {accepted}/5 accepted, {stored} B stored")
        assert stored <= QUOTA, f"{stored - QUOTA} bytes stored past the quota"
        assert set(outcomes) == {"ok", "STORAGE_QUOTA_EXCEEDED"} and accepted == 2
        mine = await my_usage(stack, user)
        assert (mine.stored_bytes, mine.storage_quota_bytes) == (stored, QUOTA)


async def test_deletes_and_clears_give_the_bytes_back(database_url: str) -> None:
    user = f"keeper-{uuid.uuid4().hex[:8]}"
    async with stacks(database_url) as (stack,):
        first, second = await stack.new_session(user), await stack.new_session(user)
        assert await send(stack, user, first, "one", files=1) == "ok"
        one = message_bytes("one", 1) + len(ANSWER)
        assert await send(stack, user, second, "two", files=1) == "ok"
        two = message_bytes("two", 1) + len(ANSWER)
        assert (await my_usage(stack, user)).stored_bytes == one + two  # 1.6 MB of 2 MB
        assert await send(stack, user, first, "three", files=1) == "STORAGE_QUOTA_EXCEEDED"
        await stack.server.sessions.ClearMessages(
            spb.ClearMessagesRequest(name=first), metadata=md(user)
        )
        assert (await my_usage(stack, user)).stored_bytes == two
        assert await send(stack, user, first, "three", files=1) == "ok"
        three = message_bytes("three", 1) + len(ANSWER)
        assert (await my_usage(stack, user)).stored_bytes == two + three
        await stack.server.sessions.DeleteSession(
            spb.DeleteSessionRequest(name=second), metadata=md(user)
        )
        await stack.server.sessions.DeleteSession(
            spb.DeleteSessionRequest(name=first), metadata=md(user)
        )
        assert (await my_usage(stack, user)).stored_bytes == 0
        # A text-only turn (PostgreSQL's one-statement start) is counted and refused alike.
        session = await stack.new_session(user)
        assert await send(stack, user, session, "y" * 1000) == "ok"
        assert (await my_usage(stack, user)).stored_bytes == 1000 + len(ANSWER)


# Replicas share a PostgreSQL database (SQLite is one process): PostgreSQL only.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_the_quota_holds_on_every_replica_and_operators_see_it(database_url: str) -> None:
    user = f"spread-{uuid.uuid4().hex[:8]}"
    async with stacks(database_url, replicas=2) as (a, b):
        assert await send(a, user, await a.new_session(user), "on a", files=2) == "ok"
        used = message_bytes("on a", 2) + len(ANSWER)
        assert (await my_usage(b, user)).stored_bytes == used
        assert (
            await send(b, user, await b.new_session(user), "on b", files=1)
            == "STORAGE_QUOTA_EXCEEDED"
        )
        admin = admin_service_pb2_grpc.AdminServiceStub(b.server.channel)
        listed = await admin.ListUserStorage(
            apb.ListUserStorageRequest(user_id=user), metadata=md(ADMIN)
        )
        assert [(u.user_id, u.stored_bytes) for u in listed.users] == [(user, used)]
        assert listed.storage_quota_bytes == QUOTA
        status = await admin.GetRuntimeStatus(apb.GetRuntimeStatusRequest(), metadata=md(ADMIN))
        assert status.limits.storage_quota_bytes == QUOTA
        assert status.limits.refused["STORAGE_QUOTA_EXCEEDED"] == 1


async def test_tool_rounds_count_and_the_counter_is_the_rows_sum(
    database_url: str, tmp_path: Path
) -> None:
    """A round's answer is written again once its tools ran: arguments and results are
    counted; the counter always equals the sum of what the user's rows say they hold."""
    user = f"tooler-{uuid.uuid4().hex[:8]}"
    async with tool_stack("openai", database_url, tmp_path, storage_quota_bytes=QUOTA) as stack:
        session = await stack.new_session(user)
        stack.fake.enqueue(
            Script(tool_calls=[("c1", "tasks__calculate", {"expression": "6*7"})]),
            Script(text="It is 42."),
        )
        events = await stack.turn(user, session, "calculate 6*7")
        assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
        counted = (await my_usage(stack, user)).stored_bytes
        db = stack.server.app.db
        async with db.read() as tx:
            rows = await tx.scalar(
                select(func.sum(messages.c.stored_bytes)).where(messages.c.user_id == user)
            )
            results = await tx.scalar(
                select(func.sum(func.length(tool_calls.c.result_text))).where(
                    tool_calls.c.user_id == user
                )
            )
        assert results and counted == rows
        text = len("calculate 6*7") + len("It is 42.") + len('{"expression": "6*7"}')
        assert counted == text + results


async def test_a_fork_counts_its_copies(database_url: str) -> None:
    user = f"forker-{uuid.uuid4().hex[:8]}"
    async with stacks(database_url) as (stack,):
        session = await stack.new_session(user)
        assert await send(stack, user, session, "one", files=1) == "ok"
        one = message_bytes("one", 1) + len(ANSWER)
        answer = (await stack.messages(user, session))[-1].name
        fork = spb.ForkSessionRequest(message=answer)
        await stack.server.sessions.ForkSession(fork, metadata=md(user))
        assert (await my_usage(stack, user)).stored_bytes == 2 * one
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stack.server.sessions.ForkSession(fork, metadata=md(user))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(refused.value).reason == "STORAGE_QUOTA_EXCEEDED"
        assert (await my_usage(stack, user)).stored_bytes == 2 * one
        # The refused fork left no session behind, on SQLite too (its SAVEPOINT once
        # committed by itself: pysqlite's legacy transactions never sent a BEGIN).
        listed = await stack.server.sessions.ListSessions(
            spb.ListSessionsRequest(), metadata=md(user)
        )
        assert len(listed.sessions) == 2
