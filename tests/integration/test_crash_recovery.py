"""Answers a crash left unfinished are marked INTERRUPTED; live turns are not, whatever
their replica id."""

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


async def test_a_restart_touches_only_turns_whose_lease_ran_out(
    database_url: str, user: str
) -> None:
    """A replica starting up sweeps crashed turns by their leases alone: its own turns
    with a live lease are left too (another process may share its replica id), and are
    swept once the lease runs out."""
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
            # As if replica-a crashed mid-answer (its lease still live), replica-b is still
            # answering, and replica-c crashed long ago.
            for s, x, lease in ((mine, "a", 60), (theirs, "b", 60), (expired, "c", -1)):
                claim = TurnClaim(f"turn-{x}", f"replica-{x}", lease)
                await repo.begin(s.name[9:], claim, "q", [], "m", "t", f"ans-{x}")
    async with running_server(settings) as server:
        async with server.app.db.transaction() as tx:
            answers = AnswerRepository(tx, user)
            states = {x: (await answers.turn_result(f"ans-{x}"))[1] for x in "abc"}
        assert {x: m.state for x, m in states.items() if m} == {
            "a": MessageState.STREAMING,  # live lease: left alone, whoever's it is
            "b": MessageState.STREAMING,
            "c": MessageState.INTERRUPTED,  # swept at start-up
        }
        page = await server.sessions.ListMessages(
            spb.ListMessagesRequest(parent=theirs.name), metadata=md(user)
        )
        # Still being written by a live replica: shown as incomplete.
        assert page.messages[1].state == rpb.MESSAGE_STATE_INCOMPLETE
        # Once replica-a's lease has run out, the periodic sweep takes its turn.
        from sqlalchemy import update

        from aichat_backend.store.tables import sessions

        async with server.app.db.transaction() as tx:
            await tx.execute(
                update(sessions)
                .where(sessions.c.active_turn_id == "turn-a")
                .values(active_turn_expires_us=0)
            )
            assert await sweep_interrupted(tx) >= 1
            answer_a = (await AnswerRepository(tx, user).turn_result("ans-a"))[1]
        assert answer_a is not None and answer_a.state is MessageState.INTERRUPTED
