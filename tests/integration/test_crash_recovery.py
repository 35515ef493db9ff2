"""Answers a crash left unfinished are marked INTERRUPTED; live turns elsewhere are not."""

from __future__ import annotations

import pytest
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb

from aichat_backend.domain import MessageState
from aichat_backend.records import TurnClaim
from aichat_backend.store.answers_repo import AnswerRepository
from aichat_backend.store.turn_leases import sweep_interrupted
from tests.support.grpc_helpers import md
from tests.support.server import make_settings, running_server

pytestmark = pytest.mark.timeout(30)


async def test_restart_marks_own_unfinished_turns(database_url: str, user: str) -> None:
    settings = make_settings(database_url, replica_id="replica-a", api_key="k")
    async with running_server(settings) as server:
        mine = await server.sessions.CreateSession(
            spb.CreateSessionRequest(session=rpb.Session()), metadata=md(user)
        )
        theirs = await server.sessions.CreateSession(
            spb.CreateSessionRequest(session=rpb.Session()), metadata=md(user)
        )
        expired = await server.sessions.CreateSession(
            spb.CreateSessionRequest(session=rpb.Session()), metadata=md(user)
        )
        async with server.app.db.transaction() as tx:
            repo = AnswerRepository(tx, user)
            # As if replica-a crashed mid-answer, and replica-b is still answering.
            for s, x in ((mine, "a"), (theirs, "b"), (expired, "c")):
                claim = TurnClaim(f"turn-{x}", f"replica-{x}", 60)
                await repo.begin(s.name[9:], claim, "q", [], "m", "t", f"ans-{x}")
    async with running_server(settings) as server:
        page = await server.sessions.ListMessages(
            spb.ListMessagesRequest(parent=mine.name), metadata=md(user)
        )
        assert page.messages[1].state == rpb.MESSAGE_STATE_INTERRUPTED
        page = await server.sessions.ListMessages(
            spb.ListMessagesRequest(parent=theirs.name), metadata=md(user)
        )
        # Still being written by a live replica: shown as incomplete, left alone.
        assert page.messages[1].state == rpb.MESSAGE_STATE_INCOMPLETE
        async with server.app.db.transaction() as tx:
            answer_b = (await AnswerRepository(tx, user).turn_result("ans-b"))[1]
        assert answer_b is not None and answer_b.state is MessageState.STREAMING
        # Once replica-c's lease has run out, the periodic sweep takes its turn too.
        from sqlalchemy import update

        from aichat_backend.store.tables import sessions

        async with server.app.db.transaction() as tx:
            await tx.execute(
                update(sessions)
                .where(sessions.c.active_turn_id == "turn-c")
                .values(active_turn_expires_us=0)
            )
            assert await sweep_interrupted(tx) == 1
            answer_c = (await AnswerRepository(tx, user).turn_result("ans-c"))[1]
        assert answer_c is not None and answer_c.state is MessageState.INTERRUPTED
