"""kill -9 of the replica producing a turn, with another replica running (issue 23).

Two real ``aichat-backend serve`` processes on one PostgreSQL. The producer is killed
with SIGKILL and kept down; everything after is done by the other replica: its recovery
ends the crashed turn's log and answer, a resume of the turn ends with ``turn_ended``
(FAILED, TURN_INTERRUPTED) numbered after every event any client may have seen, and the
session takes new messages.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb

from aichat_backend.config import Settings
from aichat_devtools.fake_llm import Script
from tests.support.grpc_helpers import md
from tests.support.replicas import (
    cluster,
    read_rest,
    read_until,
    reason_of,
    send_when_free,
    text_of,
)
from tests.support.resume import TOKENS_200, paced_200, without_keepalives

pytestmark = pytest.mark.timeout(90)


def detached(session: str, text: str = "talk") -> cpb.StreamChatRequest:
    return cpb.StreamChatRequest(session=session, text=text, options=cpb.ChatOptions(detached=True))


def turn_id_of(event: cpb.StreamChatResponse) -> str:
    return event.turn.rsplit("/", 1)[1]


def assert_interrupted(ended: cpb.TurnEnded) -> None:
    assert ended.outcome == cpb.TURN_OUTCOME_FAILED
    assert reason_of(ended.error) == "TURN_INTERRUPTED"


async def test_a_message_after_a_crash_keeps_the_crashed_turns_own_answer(
    pg_database_url: str, tmp_path: Path, user: str
) -> None:
    """Item 1: the crashed turn's answer gets what it streamed, whatever came after."""
    async with cluster(pg_database_url, tmp_path, turn_lease_seconds="3") as c:
        a = await c.start("a", replica_id="replica-a")
        b = await c.start("b", replica_id="replica-b")
        session = await a.new_session(user)
        seen = await c.crash_mid_turn("a", user, session, 40)  # what it saw is stored
        turn, crashed_answer = seen[0].turn, seen[0].turn_started.answer_message

        # B takes the next message as soon as the crashed turn's lease runs out, and the
        # new turn is still running while B's recovery ends the crashed one.
        next_gate = asyncio.Event()
        # Every try gets this answer (a try the busy session refuses calls the model too).
        c.fake.default = lambda _request: Script(
            tokens=["next ", "answer"], gate_after=1, gate=next_gate
        )
        new_call, started, _ = await send_when_free(
            b, user, cpb.StreamChatRequest(session=session, text="again")
        )
        new_answer = started.turn_started.answer_message
        assert new_answer != crashed_answer
        events, error = await b.resume(user, turn, 40)
        next_gate.set()
        rest = await read_rest(new_call)
        assert rest[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED

        assert error is not None  # a failed turn's status, for gRPC clients
        ended = events[-1].turn_ended
        print(
            f"\nitem 1: the crashed turn's end names {ended.message.name[-32:]} "
            f"({len(ended.message.text)} chars; the client saw {len(text_of(seen))})"
        )
        assert_interrupted(ended)
        assert ended.message.name == crashed_answer  # its own answer, not the new turn's
        assert ended.message.state == rpb.MESSAGE_STATE_INTERRUPTED
        assert ended.message.text.startswith(text_of(seen)) and text_of(seen)
        stored = {m.name: m for m in await b.messages(user, session)}
        assert stored[crashed_answer].text == ended.message.text
        assert stored[crashed_answer].state == rpb.MESSAGE_STATE_INTERRUPTED
        assert stored[new_answer].text == "next answer"
        assert stored[new_answer].state == rpb.MESSAGE_STATE_COMPLETE


async def test_the_recovered_end_is_numbered_after_every_event_sent(
    pg_database_url: str, tmp_path: Path, user: str
) -> None:
    """Item 2: events sent but not yet flushed when the producer died are never renumbered:
    the recovered turn_ended comes after all of them, for every client."""
    async with cluster(
        pg_database_url, tmp_path, turn_lease_seconds="3", turn_events_flush_seconds="5"
    ) as c:
        a = await c.start("a", replica_id="replica-a")
        b = await c.start("b", replica_id="replica-b")
        session = await a.new_session(user)
        c.fake.enqueue(Script(tokens=TOKENS_200, token_delay=0.05))
        call = a.chat.StreamChat(detached(session), metadata=md(user))
        seen: list[cpb.StreamChatResponse] = []
        stored = 0
        async for event in call:
            seen.append(event)
            if not stored:
                stored = await c.stored_last_seq(turn_id_of(seen[0]))
            elif len(seen) >= stored + 10:
                break  # 10 events past the last flush (the next is seconds away)
        await c.kill("a")
        call.cancel()
        last_seen = seen[-1].sequence
        assert await c.stored_last_seq(turn_id_of(seen[0])) < last_seen

        resumed, _ = await b.resume(user, seen[0].turn, last_seen)
        past = without_keepalives(resumed)
        print(f"\nitem 2: the client saw 1..{last_seen}, the recovered end is {past[-1].sequence}")
        assert [e.WhichOneof("event") for e in past] == ["turn_ended"]
        assert past[0].sequence > last_seen  # a client's "sequences only grow" holds
        assert_interrupted(past[0].turn_ended)
        whole, _ = await b.resume(user, seen[0].turn, 0)
        numbers = [e.sequence for e in whole]
        assert numbers == sorted(set(numbers)) and numbers[-1] == past[0].sequence
        assert [e.SerializeToString() for e in whole[:stored]] == [
            e.SerializeToString() for e in seen[:stored]
        ]


async def test_a_crash_before_the_first_flush_still_ends_the_turn(
    pg_database_url: str, tmp_path: Path, user: str
) -> None:
    """Item 4: the client saw turn_started (and more) but nothing was stored yet."""
    async with cluster(
        pg_database_url, tmp_path, turn_lease_seconds="3", turn_events_flush_seconds="5"
    ) as c:
        a = await c.start("a", replica_id="replica-a")
        b = await c.start("b", replica_id="replica-b")
        session = await a.new_session(user)
        seen = await c.crash_mid_turn("a", user, session, 6, stored=False)  # within 5 s
        turn_id = turn_id_of(seen[0])
        assert await c.query("SELECT 1 FROM turn_logs WHERE turn_id = $1", turn_id) == []

        for after in (seen[-1].sequence, 0):  # where the client stopped, and from the start
            resumed, error = await b.resume(user, seen[0].turn, after)
            events = without_keepalives(resumed)
            print(f"\nitem 4: resume after {after}: {[e.WhichOneof('event') for e in events]}")
            assert error is not None, error
            assert [e.WhichOneof("event") for e in events] == ["turn_ended"]
            assert events[0].sequence > seen[-1].sequence
            ended = events[0].turn_ended
            assert_interrupted(ended)
            assert ended.message.name == seen[0].turn_started.answer_message
            assert ended.message.state == rpb.MESSAGE_STATE_INTERRUPTED


async def test_how_long_until_a_crashed_turn_ends_and_its_session_is_usable(
    pg_database_url: str, tmp_path: Path, user: str
) -> None:
    """Item 5, with the default lease and sweep settings and the producer kept down."""
    defaults = Settings.model_validate({})
    bound = defaults.turn_lease_seconds + defaults.turn_sweep_seconds
    assert bound <= 15
    async with cluster(pg_database_url, tmp_path) as c:
        a = await c.start("a", replica_id="replica-a")
        b = await c.start("b", replica_id="replica-b")
        session = await a.new_session(user)
        seen = await c.crash_mid_turn("a", user, session, 20)
        killed = time.monotonic()

        async def ended_after() -> float:
            events, _ = await b.resume(user, seen[0].turn, 20)
            assert_interrupted(events[-1].turn_ended)
            return time.monotonic() - killed

        async def usable_after() -> float:
            c.fake.enqueue(Script(tokens=["fine"]))
            new_call, _, took = await send_when_free(
                b, user, cpb.StreamChatRequest(session=session, text="next")
            )
            rest = await read_rest(new_call)
            assert rest[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
            return took - killed

        ended, usable = await asyncio.gather(ended_after(), usable_after())
        print(
            f"\nitem 5 (lease {defaults.turn_lease_seconds:g} s, sweep every "
            f"{defaults.turn_sweep_seconds:g} s): crash -> turn ended {ended:.1f} s, "
            f"crash -> session usable {usable:.1f} s"
        )


async def test_replicas_with_default_ids_never_recover_each_others_live_turns(
    pg_database_url: str, tmp_path: Path, user: str
) -> None:
    """Item 6: every process has its own replica id, and a restarting replica touches
    only turns whose lease ran out."""
    async with cluster(pg_database_url, tmp_path) as c:
        a = await c.start("a")  # AICHAT_REPLICA_ID unset on both
        await c.start("b")
        session = await a.new_session(user)
        gate = asyncio.Event()
        c.fake.enqueue(paced_200(gate))
        call = a.chat.StreamChat(detached(session), metadata=md(user))
        seen = await read_until(call, 10)
        turn_id = turn_id_of(seen[0])
        await c.wait_stored(turn_id, 10)

        await c.stop("b")  # B restarts while A's turn runs
        b = await c.start("b")
        gate.set()
        rest = [e async for e in call]
        assert rest[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
        events, error = await b.resume(user, seen[0].turn, 0)
        assert error is None
        assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
        answer = (await b.messages(user, session))[-1]
        assert answer.state == rpb.MESSAGE_STATE_COMPLETE
        assert answer.text == "".join(TOKENS_200)

        # The ids: not the host name alone, and one per process.
        other = await b.new_session(user)
        c.fake.enqueue(Script(tokens=["b"]))
        on_b = [
            e
            async for e in b.chat.StreamChat(
                cpb.StreamChatRequest(session=other, text="x"), metadata=md(user)
            )
        ]
        await c.wait_stored(turn_id_of(on_b[0]), on_b[-1].sequence)
        rows = await c.query(
            "SELECT turn_id, replica_id FROM turn_logs WHERE turn_id = ANY($1::text[])",
            [turn_id, turn_id_of(on_b[0])],
        )
        ids = {r["turn_id"]: r["replica_id"] for r in rows}
        assert len(ids) == 2 and ids[turn_id] != ids[turn_id_of(on_b[0])]
        assert socket.gethostname() not in ids.values()
