"""A running turn keeps its session's lease alive; a finished or dropped one does not."""

from __future__ import annotations

import asyncio

import pytest
from aichat.v1 import chat_service_pb2 as cpb
from sqlalchemy import select

from aichat_backend.engine.leases import LeaseKeeper
from aichat_backend.records import TurnClaim
from aichat_backend.store.answers_repo import AnswerRepository
from aichat_backend.store.database import Database
from aichat_backend.store.tables import sessions
from aichat_devtools.fake_llm import Script
from tests.support.chat import chat_stack
from tests.support.grpc_helpers import md

pytestmark = pytest.mark.timeout(30)


async def _expiry(db: Database, session: str) -> tuple[str | None, int | None]:
    async with db.read() as tx:
        row = (
            await tx.execute(
                select(sessions.c.active_turn_id, sessions.c.active_turn_expires_us).where(
                    sessions.c.id == session.removeprefix("sessions/")
                )
            )
        ).one()
    return row[0], row[1]


async def _until_renewed(db: Database, session: str, first: int) -> int:
    """The lease's expiry once it moved past ``first`` (the test's timeout bounds the wait)."""
    while True:
        turn, expires = await _expiry(db, session)
        assert turn is not None, "the turn ended before its lease was renewed"
        if expires is not None and expires > first:
            return expires
        await asyncio.sleep(0.05)


async def test_a_running_turn_renews_its_lease_until_it_ends(database_url: str, user: str) -> None:
    # The shortest lease settings allow (3 s): renewed within half of it.
    async with chat_stack("openai", database_url, turn_lease_seconds=3) as stack:
        db = stack.server.app.db
        session = await stack.new_session(user)
        stack.fake.enqueue(Script(tokens=["a", "b"], hang_after=1))
        call = stack.server.chat.StreamChat(
            cpb.StreamChatRequest(session=session, text="hold on"), metadata=md(user)
        )
        async for event in call:
            if event.WhichOneof("event") == "text_delta":
                break
        turn, claimed = await _expiry(db, session)
        assert turn is not None and claimed is not None
        renewed = await _until_renewed(db, session, claimed)
        assert renewed > claimed
        assert (await _expiry(db, session))[0] == turn  # the same turn, still running
        call.cancel()
        await stack.fake.wait_disconnect(within=5.0)  # the server saw the client leave
        await stack.server.app.engine.drain_writes()
        assert (await _expiry(db, session))[0] is None  # released, not renewed after


async def test_only_held_leases_are_renewed(database_url: str, user: str) -> None:
    async with chat_stack("openai", database_url) as stack:
        db = stack.server.app.db
        kept = await stack.new_session(user)
        dropped = await stack.new_session(user)
        async with db.transaction() as tx:
            repo = AnswerRepository(tx, user)
            for name, turn in ((kept, "turn-kept"), (dropped, "turn-dropped")):
                claim = TurnClaim(turn, "test", 3)
                await repo.begin(name[9:], claim, "q", [], "m", "t", f"ans-{turn}")
        keeper = LeaseKeeper(stack.server.app.turn_store, lease_seconds=0.6)
        _, kept_at = await _expiry(db, kept)
        _, dropped_at = await _expiry(db, dropped)
        assert kept_at is not None and dropped_at is not None
        keeper.hold(user, kept[9:], "turn-kept")
        keeper.drop(keeper.hold(user, dropped[9:], "turn-dropped"))
        assert keeper.held == 1
        await _until_renewed(db, kept, kept_at)
        await keeper.close()
        assert (await _expiry(db, dropped)) == ("turn-dropped", dropped_at)
