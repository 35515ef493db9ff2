"""Resume across replicas: a turn started on replica A is resumed on replica B while A is
still producing it, over gRPC and through Envoy (a browser's EventSource GET), on one
PostgreSQL (fan-out by LISTEN/NOTIFY) and one Redis (limits)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from aichat.v1 import chat_service_pb2 as cpb

from aichat_devtools.dev_token import ensure_keys, make_token
from aichat_devtools.fake_llm import FakeLLMServer, Script
from tests.e2e.envoy.helpers import read_sse
from tests.e2e.envoy.test_scale_out import Replica, with_second_endpoint
from tests.support.envoy import envoy_in_front, render_for_test
from tests.support.grpc_helpers import md
from tests.support.http import TLS
from tests.support.replicas import cluster
from tests.support.resume import (
    TOKENS_200,
    cut_after,
    paced_200,
    resume,
    seqs,
    text_of,
    without_keepalives,
)
from tests.support.serve_process import ServeProcess, child_env
from tests.support.tool_stack import tasks_server_entry

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def replicas(
    pg_database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[FakeLLMServer, Replica, Replica]]:
    servers_file = tmp_path / "mcp.json"
    servers_file.write_text(
        json.dumps({"mcpServers": {"tasks": tasks_server_entry(tmp_path / "tasks.db")}})
    )
    async with FakeLLMServer() as fake:
        settings = {
            "database_url": pg_database_url,
            "redis_url": "redis://127.0.0.1:6379/0",
            "llm_provider": "openai",
            "llm_model": "gpt-test",
            "llm_base_url": fake.base_url,
            "api_key": "k",
            "mcp_servers_file": str(servers_file),
            "rate_rps": "0",
            "log_format": "json",
            # A turn held at the gate past this makes heartbeats of its own (numbered
            # events), while a reader waiting on it sends keep-alives (sequence 0): both
            # kinds happen in a run, as on a loaded machine, not only on one.
            "heartbeat_seconds": "1",
        }
        spawned: list[ServeProcess] = []
        started: list[Replica] = []
        try:
            for name in ("replica-a", "replica-b"):
                env = child_env(tmp_path / name, replica_id=name, **settings)
                spawned.append(await ServeProcess.start("serve", env=env))
                started.append(Replica(spawned[-1], await spawned[-1].wait_serving()))
            yield fake, started[0], started[1]
        finally:
            for never_served in spawned[len(started) :]:
                await never_served.ensure_dead()  # it must not outlive the test
            for replica in started:
                await replica.channel.close()
                replica.process.send_signal(signal.SIGTERM)
            for replica in started:
                assert await replica.process.wait_exit(20) == 0


def detached(session: str) -> cpb.StreamChatRequest:
    return cpb.StreamChatRequest(
        session=session, text="talk", options=cpb.ChatOptions(detached=True)
    )


async def new_session(replica: Replica, user: str) -> str:
    from aichat.v1 import resources_pb2, session_service_pb2

    created = await replica.sessions.CreateSession(
        session_service_pb2.CreateSessionRequest(session=resources_pb2.Session()),
        metadata=md(user),
    )
    return created.name


async def stored_answer(replica: Replica, user: str, session: str) -> str:
    from aichat.v1 import session_service_pb2

    page = await replica.sessions.ListMessages(
        session_service_pb2.ListMessagesRequest(parent=session), metadata=md(user)
    )
    return page.messages[-1].text


async def test_resume_on_the_other_replica_while_the_first_produces(
    replicas: tuple[FakeLLMServer, Replica, Replica], tmp_path: Path, user: str
) -> None:
    fake, a, b = replicas
    session = await new_session(a, user)

    # 1. gRPC: started on A, cut after event 50, resumed on B while A is held mid-answer.
    gate = asyncio.Event()
    fake.enqueue(paced_200(gate))
    seen = await cut_after(a.chat, user, detached(session), 50)
    assert seqs(seen) == list(range(1, 51))
    turn = seen[0].turn
    call = b.chat.StreamTurnEvents(
        cpb.StreamTurnEventsRequest(name=turn, after_seq=50), metadata=md(user), timeout=60
    )
    got: list[cpb.StreamChatResponse] = []
    try:
        async for event in call:
            got.append(event)
            if event.WhichOneof("event") == "heartbeat":
                # A, held, said it is alive (and B relayed it live), or B waited for A:
                # A produces the rest now; B relays it live.
                gate.set()
    finally:
        gate.set()
    rest = without_keepalives(got)
    assert seqs(rest) == list(range(51, 51 + len(rest)))
    assert rest[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
    answer = text_of(seen) + text_of(rest)
    assert answer == "".join(TOKENS_200) == await stored_answer(b, user, session)
    # Same replica too, and past the end.
    again = await resume(a.chat, user, turn, 50)
    assert [e.SerializeToString() for e in again] == [e.SerializeToString() for e in rest]
    past = await resume(b.chat, user, turn, 999)
    assert [e.WhichOneof("event") for e in past] == ["turn_ended"]

    # 2. Through Envoy, as a browser's EventSource: GET with the token in the query.
    keys, _ = ensure_keys(tmp_path / "keys")
    config = with_second_endpoint(
        render_for_test(backend_port=a.port, jwks_path=keys.jwks_path), b.port
    )
    gate2 = asyncio.Event()
    fake.enqueue(paced_200(gate2))
    seen2 = await cut_after(a.chat, user, detached(session), 50)
    turn2 = seen2[0].turn
    async with envoy_in_front(config, tmp_path / "envoy") as envoy:
        token = make_token(keys, user)
        url = f"/v1/chat/{turn2}:streamEvents?afterSeq=50&access_token={token}"
        events: list[dict] = []  # type: ignore[type-arg]
        try:
            async with (
                httpx2.AsyncClient(verify=TLS, base_url=envoy.base_url, timeout=60) as http,
                http.stream("GET", url, headers={"accept": "text/event-stream"}) as response,
            ):
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
                        if "heartbeat" in events[-1]:
                            gate2.set()  # as over gRPC above
        finally:
            gate2.set()
    # Keep-alives while the reader waited (as over gRPC above): heartbeats, no sequence
    # number. The turn's own heartbeats (A held past its period) are numbered events.
    assert all("heartbeat" in e for e in events if not int(e.get("sequence", 0)))
    events = [e for e in events if int(e.get("sequence", 0))]
    assert [int(e["sequence"]) for e in events] == list(range(51, 51 + len(events)))
    assert all(e["turn"] == turn2 for e in events)
    assert events[-1]["turnEnded"]["outcome"] == "TURN_OUTCOME_COMPLETED"
    text2 = text_of(seen2) + "".join(e["textDelta"]["text"] for e in events if "textDelta" in e)
    assert text2 == "".join(TOKENS_200) == await stored_answer(a, user, session)

    # 3. An approval turn asked on A is replayed on B, approval_required included.
    for replica in (a, b):
        await replica.process.wait_for_log(lambda e: "connected" in str(e.get("msg", "")), 30)
    fake.enqueue(Script(tool_calls=[("r1", "tasks__add_task", {"title": "resume me"})]))
    asked = await a.turn(user, session, "add it")
    replay = await resume(b.chat, user, asked[0].turn, 0)
    assert [e.SerializeToString() for e in replay] == [e.SerializeToString() for e in asked]
    assert [e.WhichOneof("event") for e in replay][-2:] == ["approval_required", "turn_ended"]
    assert replay[-1].turn_ended.outcome == cpb.TURN_OUTCOME_AWAITING_APPROVAL


async def test_cancel_reaches_the_replica_running_the_turn(
    replicas: tuple[FakeLLMServer, Replica, Replica], tmp_path: Path, user: str
) -> None:
    """CancelTurn asked of B stops the detached turn A runs (NOTIFY), over gRPC and as REST
    through Envoy; owner only, idempotent; the answer so far is stored INCOMPLETE."""
    from aichat.v1 import session_service_pb2

    fake, a, b = replicas
    session = await new_session(a, user)

    async def started_on_a() -> str:
        fake.enqueue(Script(tokens=TOKENS_200, token_delay=0.05))  # ~10 s if left alone
        seen = await cut_after(a.chat, user, detached(session), 3)
        turn = seen[0].turn
        got = await b.sessions.GetSession(
            session_service_pb2.GetSessionRequest(name=session), metadata=md(user)
        )
        assert got.active_turn == turn  # B sees A's turn answering
        return turn

    async def ends_cancelled(turn: str) -> None:
        events = await resume(b.chat, user, turn, 0)
        assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_CANCELLED
        assert "CancelTurn" in events[-1].turn_ended.error.message
        page = await b.sessions.ListMessages(
            session_service_pb2.ListMessagesRequest(parent=session), metadata=md(user)
        )
        assert page.messages[-1].state == 2  # MESSAGE_STATE_INCOMPLETE
        assert page.messages[-1].text == text_of(events)
        assert len(text_of(events)) < len("".join(TOKENS_200))

    # 1. gRPC on B.
    turn = await started_on_a()
    disconnects = fake.stream_disconnects
    await b.chat.CancelTurn(cpb.CancelTurnRequest(name=turn), metadata=md(user))
    await fake.wait_disconnect(within=5.0, count=disconnects + 1)  # A stopped the model call
    await ends_cancelled(turn)

    # 2. REST through Envoy, which only knows B.
    keys, _ = ensure_keys(tmp_path / "keys")
    config = render_for_test(backend_port=b.port, jwks_path=keys.jwks_path)
    turn = await started_on_a()
    async with (
        envoy_in_front(config, tmp_path / "envoy") as envoy,
        httpx2.AsyncClient(verify=TLS, base_url=envoy.base_url, timeout=30) as http,
    ):
        path = f"/v1/chat/{turn}:cancel"
        mallory = {"authorization": f"Bearer {make_token(keys, 'mallory-' + user)}"}
        refused = await http.post(path, json={}, headers=mallory)
        assert refused.status_code == 404, refused.text
        assert refused.json()["details"][0]["reason"] == "TURN_NOT_FOUND"
        owner = {"authorization": f"Bearer {make_token(keys, user)}"}
        disconnects = fake.stream_disconnects
        first = await http.post(path, json={}, headers=owner)
        assert (first.status_code, first.json()) == (200, {}), first.text
        await fake.wait_disconnect(within=5.0, count=disconnects + 1)
        await ends_cancelled(turn)
        again = await http.post(path, json={}, headers=owner)  # idempotent
        assert (again.status_code, again.json()) == (200, {}), again.text


def with_stream_idle_timeout(config: dict, seconds: int) -> dict:  # type: ignore[type-arg]
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    manager["typed_config"]["stream_idle_timeout"] = f"{seconds}s"
    return config


async def test_a_rest_resume_of_a_crashed_turn_gets_heartbeats_until_it_ends(
    pg_database_url: str, tmp_path: Path, user: str
) -> None:
    """Issue 23 item 3: a reader waiting on a turn whose replica died (not recovered yet)
    gets heartbeats, so Envoy's stream idle timeout (here 3 s, heartbeats every 1 s; in
    envoy.yaml 20 s and 5 s) never cuts it; it ends with the recovered turn_ended."""
    async with cluster(
        pg_database_url, tmp_path, heartbeat_seconds="1", turn_lease_seconds="8"
    ) as c:
        a = await c.start("a", replica_id="replica-a")
        b = await c.start("b", replica_id="replica-b")
        session = await a.new_session(user)
        turn = (await c.crash_mid_turn("a", user, session, 20))[0].turn

        keys, _ = ensure_keys(tmp_path / "keys")
        config = render_for_test(backend_port=b.port, jwks_path=keys.jwks_path)
        async with envoy_in_front(with_stream_idle_timeout(config, 3), tmp_path / "envoy") as envoy:
            token = make_token(keys, user)

            async def resumed(after: int) -> list[dict]:  # type: ignore[type-arg]
                url = f"/v1/chat/{turn}:streamEvents?afterSeq={after}&access_token={token}"
                async with (
                    httpx2.AsyncClient(verify=TLS, base_url=envoy.base_url, timeout=60) as http,
                    http.stream("GET", url, headers={"accept": "text/event-stream"}) as response,
                ):
                    assert response.status_code == 200
                    return [e.data for e in await read_sse(response)]

            events = await resumed(20)
            # What A stored after event 20, then the wait (heartbeats), then the end.
            kinds = [next(k for k in e if k not in ("sequence", "turn")) for e in events]
            stored = kinds.index("heartbeat")
            assert set(kinds[:stored]) <= {"textDelta"} and kinds[-1] == "turnEnded", kinds
            assert set(kinds[stored:-1]) == {"heartbeat"}
            assert len(kinds[stored:-1]) >= 3, kinds  # the wait outlived Envoy's idle timeout
            # A reader's heartbeat is no event of the turn: it has no sequence number (0).
            assert all(int(e.get("sequence", 0)) == 0 for e in events[stored:-1])
            numbered = [int(e["sequence"]) for e in events[:stored]] + [int(events[-1]["sequence"])]
            assert numbered == sorted(set(numbered)) and numbered[-1] > 20
            # Whatever A stored after 20 follows it without a gap (A may have been killed
            # before its next flush, and then only the recovered end follows).
            assert stored == 0 or numbered[0] == 21, numbered
            ended = events[-1]
            assert ended["turnEnded"]["outcome"] == "TURN_OUTCOME_FAILED"
            assert "TURN_INTERRUPTED" in json.dumps(ended["turnEnded"]["error"])

            # The smaller item: afterSeq at the largest int64 is just turn_ended.
            past = await resumed(2**63 - 1)
            assert [int(e["sequence"]) for e in past] == [int(ended["sequence"])]
            assert "turnEnded" in past[0]
